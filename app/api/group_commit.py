"""Group commit: concurrent submissions share one durable transaction.

Every POST must be durable (WAL, ``synchronous=FULL``) before it is answered, so a
commit — one fsync — per request caps ingest at the disk's fsync rate. Submissions are
queued for one committer thread; whatever queued up while its previous commit (and
fsync) ran is committed together by the next one, and each caller still gets its answer
only after *its* datapoint is on disk. A lone request is committed at once: there is no
batching window, since waiting could only slow the sequential case down.

Why a thread of its own: the event loop must never wait for an fsync, and handing a
request to the committer directly (and the batch's answers back in one
``call_soon_threadsafe``) costs less than a trip through the generic worker-thread pool.
The thread exits after a few idle seconds and is started again by the next submission.

A batch that fails (a conflicting id, an invalid value) is retried one datapoint at a
time, so each caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Final, Optional, Union

from app.core.models import DataPoint
from app.service import BenchService

log = logging.getLogger(__name__)

#: Most datapoints committed in one transaction.
MAX_BATCH: Final[int] = 256
#: The committer thread ends after this long without work.
IDLE_EXIT_S: Final[float] = 5.0

#: Where a submission's outcome goes: a future of the caller's event loop (answered on
#: that loop) or a thread future (for callers on worker threads).
_Waiter = Union["asyncio.Future[DataPoint]", "Future[DataPoint]"]
_Outcome = tuple[Optional[DataPoint], Optional[BaseException]]


class GroupCommitter:
    """``submit``/``submit_async`` with the durability of ``service.submit``, batched
    under load."""

    def __init__(self, service: BenchService, max_batch: int = MAX_BATCH,
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._service = service
        self._max_batch = max_batch
        self._idle_exit_s = idle_exit_s
        self._pending: deque[tuple[DataPoint, _Waiter]] = deque()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    # -- submitting --------------------------------------------------------------------

    def submit(self, datapoint: DataPoint) -> DataPoint:
        """Commit ``datapoint`` durably; blocks the calling thread until it is on disk.

        Never call this on an event loop thread: use ``submit_async`` there."""
        future: Future[DataPoint] = Future()
        self._enqueue(datapoint, future)
        return future.result()

    async def submit_async(self, datapoint: DataPoint) -> DataPoint:
        """Commit ``datapoint`` durably; the event loop keeps running meanwhile."""
        future: asyncio.Future[DataPoint] = asyncio.get_running_loop().create_future()
        self._enqueue(datapoint, future)
        return await future

    def pending(self) -> int:
        """Submissions queued and not yet taken into a transaction."""
        with self._lock:
            return len(self._pending)

    @property
    def running(self) -> bool:
        """Whether the committer thread is alive (it ends when idle or closed)."""
        with self._lock:
            return self._thread is not None

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued, then stop the committer thread (a later submission
        starts it again)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
            self._work.notify()
        if thread is not None:
            thread.join(timeout_s)
        with self._lock:
            self._stopping = False

    def _enqueue(self, datapoint: DataPoint, waiter: _Waiter) -> None:
        with self._lock:
            self._pending.append((datapoint, waiter))
            if self._thread is None:
                self._start_thread_locked()
            else:
                self._work.notify()

    def _start_thread_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="benchdata-api-commit")
        self._thread.start()

    # -- the committer thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    outcomes = self._commit(batch)
                except BaseException as exc:  # never leave a caller waiting forever
                    log.exception("group commit failed")
                    outcomes = [(None, exc)] * len(batch)
                _deliver([waiter for _, waiter in batch], outcomes)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    # Ended by an unexpected error: queued callers still get a committer.
                    self._thread = None
                    if self._pending:
                        self._start_thread_locked()

    def _next_batch(self) -> Optional[list[tuple[DataPoint, _Waiter]]]:
        """Everything queued (up to max_batch), waiting for work; None when the thread
        should end (idle for a while, or asked to stop, with nothing left)."""
        with self._lock:
            while not self._pending:
                if self._stopping or not self._work.wait(self._idle_exit_s):
                    if not self._pending:
                        # Under the lock: a submission either saw this thread alive (and
                        # is in the queue, checked just now) or will start a new one.
                        self._thread = None
                        return None
            count = min(len(self._pending), self._max_batch)
            return [self._pending.popleft() for _ in range(count)]

    def _commit(self, batch: list[tuple[DataPoint, _Waiter]]) -> list[_Outcome]:
        if len(batch) > 1:
            try:
                stored = self._service.submit_many([dp for dp, _ in batch])
            except Exception:
                pass  # retried one by one below, so each caller gets its own error
            else:
                return [(result, None) for result in stored]
        outcomes: list[_Outcome] = []
        for datapoint, _ in batch:
            try:
                outcomes.append((self._service.submit(datapoint), None))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes


def _deliver(waiters: list[_Waiter], outcomes: list[_Outcome]) -> None:
    """Hand each caller its outcome: one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[DataPoint], _Outcome]]] = {}
    for waiter, outcome in zip(waiters, outcomes, strict=True):
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, outcome))
        else:
            _settle(waiter, outcome)
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            pass


def _settle_all(settled: list[tuple["asyncio.Future[DataPoint]", _Outcome]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _settle(future: _Waiter, outcome: _Outcome) -> None:
    if future.done():  # the caller was cancelled (shutdown); the datapoint is stored
        return
    result, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
