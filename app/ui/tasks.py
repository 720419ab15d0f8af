"""Background work for the window: executors whose results come back on the GUI thread.

After anki's ``aqt/taskman.py``: the GUI thread never touches the disk or the network.
It hands a function to :meth:`TaskManager.run` and names what to do with the result
(``on_done``) or the exception (``on_error``); both callbacks run on the GUI thread.
Reads go to a small pool; every write goes to one single-threaded executor, so the store
sees one writer from the GUI and captures are applied in the order the operator made them.
Core events that fire on other threads reach the GUI with :meth:`TaskManager.call_soon`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

from PySide6.QtCore import QObject, Qt, Signal

log = logging.getLogger(__name__)

OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


#: How much lower than the GUI thread background threads run (Linux nice increment).
BACKGROUND_NICENESS = 10


def lower_thread_priority() -> None:
    """Let the GUI thread win the CPU over copying, hashing and uploading.

    On Linux niceness is per thread and inherited by the threads a thread starts, so the
    file store's hashing helper and the hosted components' threads run below the GUI too.
    Elsewhere this is a no-op (the GIL hand-off then keeps the window responsive).
    """
    if sys.platform.startswith("linux") and hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        except OSError:
            pass


class TaskManager(QObject):
    """Runs callables off the GUI thread and delivers their outcome on it."""

    #: A callable to run on the GUI thread (queued from any thread).
    _deliver = Signal(object)
    #: An unhandled background failure, as a sentence for the status bar.
    failed = Signal(str)
    #: Emitted on the GUI thread whenever the number of unfinished tasks changes.
    busy_changed = Signal(int)

    def __init__(self, parent: Optional[QObject] = None, readers: int = 3) -> None:
        super().__init__(parent)
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="ui-read",
                                           initializer=lower_thread_priority)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ui-write",
                                          initializer=lower_thread_priority)
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        #: run_latest: per key, None while one runs, or the request that waits for it.
        self._latest: dict[str, Optional[tuple[Callable[[], Any], Optional[OnDone],
                                              Optional[OnError]]]] = {}
        self._deliver.connect(self._run_delivered, Qt.ConnectionType.QueuedConnection)

    # -- submitting ----------------------------------------------------------------------

    def run(self, fn: Callable[[], Any], on_done: Optional[OnDone] = None,
            on_error: Optional[OnError] = None, *, write: bool = False) -> Optional[Future]:
        """Run ``fn`` in the background (``write=True``: on the one writer thread)."""
        if self._closed:
            return None
        executor = self._writer if write else self._readers
        with self._lock:
            self._pending += 1
        self.busy_changed.emit(self._pending)
        future = executor.submit(fn)
        future.add_done_callback(lambda f: self.call_soon(
            lambda: self._finish(f, on_done, on_error)))
        return future

    def run_latest(self, key: str, fn: Callable[[], Any], on_done: Optional[OnDone] = None,
                   on_error: Optional[OnError] = None) -> None:
        """Like :meth:`run` (a read), but at most one task per ``key`` at a time: asked
        again while one runs, the newest request waits and starts when it ends (earlier
        waiting ones are dropped). A status read asked for several times a second then
        never piles up on the pool, and the last request still gets a fresh answer.
        Call it on the GUI thread."""
        if key in self._latest:
            self._latest[key] = (fn, on_done, on_error)
            return
        self._latest[key] = None

        def settle(callback: Optional[Callable[[Any], None]], outcome: Any) -> None:
            waiting = self._latest.pop(key, None)
            try:
                if callback is not None:
                    callback(outcome)
            finally:
                if waiting is not None:
                    self.run_latest(key, *waiting)

        def failed(error: BaseException) -> None:
            if on_error is None:
                log.error("background task failed", exc_info=error)
                self.failed.emit(describe_error(error))
            settle(on_error, error)

        if self.run(fn, lambda result: settle(on_done, result), failed) is None:
            self._latest.pop(key, None)  # shut down: nothing runs any more

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the GUI thread (safe from any thread, also after shutdown)."""
        if self._closed:
            return
        try:
            self._deliver.emit(fn)
        except RuntimeError:  # the QObject is gone: the window closed meanwhile
            pass

    def idle(self) -> bool:
        return self._pending == 0

    @property
    def pending(self) -> int:
        return self._pending

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; let running tasks finish (their results are dropped)."""
        self._closed = True
        self._readers.shutdown(wait=wait, cancel_futures=True)
        self._writer.shutdown(wait=wait, cancel_futures=False)

    # -- delivering ----------------------------------------------------------------------

    def _run_delivered(self, fn: Callable[[], None]) -> None:
        if self._closed:
            return
        fn()

    def _finish(self, future: Future, on_done: Optional[OnDone],
                on_error: Optional[OnError]) -> None:
        with self._lock:
            self._pending -= 1
        self.busy_changed.emit(self._pending)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            if on_done is not None:
                on_done(future.result())
            return
        if on_error is not None:
            on_error(error)
        else:
            log.error("background task failed", exc_info=error)
            self.failed.emit(describe_error(error))


def describe_error(error: BaseException) -> str:
    """A one-line message for a person (our errors already say what to do)."""
    text = str(error) or type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__
