"""Group commit: concurrent submissions share one durable transaction.

Every POST must be durable (WAL, ``synchronous=FULL``) before it is answered, so a
commit — one fsync — per request caps ingest at the disk's fsync rate. When several
clients submit at once, the requests that arrive while one commit is running are
committed together by the next, and each caller still returns only after *its*
datapoint is on disk. A lone request is committed at once (no batching delay).

No thread of its own: the first waiting caller becomes the leader and commits what is
queued; the others wait for their result. A batch that fails (a conflicting id, an
invalid value) is retried one datapoint at a time, so each caller gets its own answer.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Final

from app.core.models import DataPoint
from app.service import BenchService

#: Most datapoints committed in one transaction.
MAX_BATCH: Final[int] = 256


class GroupCommitter:
    """``submit(datapoint)`` with the durability of ``service.submit``, batched under load."""

    def __init__(self, service: BenchService, max_batch: int = MAX_BATCH) -> None:
        self._service = service
        self._max_batch = max_batch
        self._pending: queue.SimpleQueue[tuple[DataPoint, Future[DataPoint]]] = queue.SimpleQueue()
        self._leader = threading.Lock()

    def submit(self, datapoint: DataPoint) -> DataPoint:
        future: Future[DataPoint] = Future()
        self._pending.put((datapoint, future))
        while True:
            if self._leader.acquire(blocking=False):
                try:
                    self._commit_pending()
                finally:
                    self._leader.release()
                # Checked after releasing: a caller that queued while we held the lead
                # (and so could not take it) is served by us now, not after a timeout.
                if future.done() and self._pending.empty():
                    break
            else:
                # Another caller leads; ours is in its next batch at the latest.
                try:
                    return future.result(timeout=0.05)
                except TimeoutError:
                    continue
        return future.result()

    def _take_batch(self) -> list[tuple[DataPoint, Future[DataPoint]]]:
        batch = []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._pending.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit_pending(self) -> None:
        while batch := self._take_batch():
            if len(batch) > 1:
                try:
                    stored = self._service.submit_many([dp for dp, _ in batch])
                except Exception:
                    pass  # retried one by one below, so each caller gets its own error
                else:
                    for (_, future), result in zip(batch, stored):
                        future.set_result(result)
                    continue
            for datapoint, future in batch:
                try:
                    future.set_result(self._service.submit(datapoint))
                except BaseException as exc:
                    future.set_exception(exc)
