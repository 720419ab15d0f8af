"""Files waiting to be captured, one after another, each with its own progress and cancel.

The window's capture queue (``app/ui/capture_panel.py`` is only a view over it): the
operator hands over files (a drop, the file picker, a dropped folder) and keeps working
while one worker thread captures them in order through the service's one capture path
(``BenchService.submit``), so a captured file is exactly what any other capture makes.

* Each item is *queued*, *capturing*, *done*, *failed* (with the reason) or *cancelled*.
* Cancelling a queued item skips it; cancelling the item being copied stops the copy at its
  next progress report (about every 64 MiB, and once at the end before the row is written):
  the service then removes the partial copy and nothing half-captured remains. A cancel
  that arrives after the copy's last report is too late: the item is captured whole and
  says *done*.
* Failed and cancelled items can be retried (they go to the back of the queue).

Listeners hear about every change on the thread that made it (the worker's, or the
caller's for add/cancel/retry) and must return quickly; the window coalesces them.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from app.core.models import FileDataPoint
from app.core.units import human_size

log = logging.getLogger(__name__)


class ItemState(str, enum.Enum):
    QUEUED = "queued"
    CAPTURING = "capturing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States an item does not leave by itself.
FINISHED = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED})
#: States the operator can retry.
RETRYABLE = frozenset({ItemState.FAILED, ItemState.CANCELLED})


class CaptureCancelled(Exception):
    """The operator cancelled a capture; files already captured stay captured."""


@dataclass(frozen=True)
class CaptureRequest:
    """One file to capture and what it belongs to (from the capture dialog)."""

    path: Path
    size: int
    label: str
    names: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    def datapoint(self, ownership: Any) -> FileDataPoint:
        return FileDataPoint(label=self.label, path=str(self.path), ownership_info=ownership,
                             custom_metadata=dict(self.metadata))


@dataclass(frozen=True)
class QueueItem:
    """An immutable view of one item; the queue replaces it on every change."""

    key: int
    request: CaptureRequest
    state: ItemState = ItemState.QUEUED
    done_bytes: int = 0
    error: Optional[str] = None
    datapoint_id: Optional[str] = None
    #: The run (see :class:`QueueSummary`) the item belongs to.
    run: int = 0
    #: Cancel asked while it was being copied; it stops at the next progress report.
    cancelling: bool = False

    @property
    def name(self) -> str:
        return self.request.label or self.request.path.name

    @property
    def remaining_bytes(self) -> int:
        if self.state in FINISHED:
            return 0
        return max(0, self.request.size - self.done_bytes)

    def describe_state(self) -> str:
        """The words the panel shows (failed items with their reason)."""
        if self.state == ItemState.FAILED:
            return f"failed: {self.error}" if self.error else "failed"
        if self.state == ItemState.CAPTURING and self.cancelling:
            return "cancelling…"
        return self.state.value


@dataclass(frozen=True)
class QueueSummary:
    """The current run: the items handed over since the queue was last idle."""

    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting: int = 0
    bytes_left: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def active(self) -> bool:
        return self.waiting > 0

    def headline(self) -> str:
        """``Capturing 3 of 40 · 1.2 GiB left`` while it runs, else how it ended."""
        if self.active:
            return (f"Capturing {min(self.finished + 1, self.total)} of {self.total} · "
                    f"{human_size(self.bytes_left)} left")
        if not self.total:
            return ""
        parts = [f"Captured {self.done} of {self.total}"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return " · ".join(parts)


Listener = Callable[[], None]
Capture = Callable[[CaptureRequest, Callable[[int, Optional[int]], None]], str]


def service_capture(service: Any) -> Capture:
    """Capture one request through ``service.submit`` (copy, hash, fsync, commit)."""

    def capture(request: CaptureRequest, progress: Callable[[int, Optional[int]], None]) -> str:
        ownership = service.ownership(**dict(request.names))
        return service.submit(request.datapoint(ownership), progress=progress).datapoint_id

    return capture


class CaptureQueue:
    """Captures requests one at a time on its own thread; thread-safe."""

    def __init__(self, capture: Capture, *,
                 thread_initializer: Optional[Callable[[], None]] = None,
                 describe_error: Callable[[BaseException], str] = str) -> None:
        self._capture = capture
        self._initializer = thread_initializer
        self._describe_error = describe_error
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._items: dict[int, QueueItem] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._pending: deque[int] = deque()
        self._next_key = 0
        self._run = 0
        self._closed = False
        self._listeners: list[Listener] = []
        self._thread: Optional[threading.Thread] = None

    # -- observing ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every change (from whichever thread made it)."""
        self._listeners.append(listener)

    def items(self) -> list[QueueItem]:
        with self._lock:
            return list(self._items.values())

    def item(self, key: int) -> QueueItem:
        with self._lock:
            return self._items[key]

    def summary(self) -> QueueSummary:
        with self._lock:
            current = [i for i in self._items.values() if i.run == self._run]
        return QueueSummary(
            total=len(current),
            done=sum(i.state == ItemState.DONE for i in current),
            failed=sum(i.state == ItemState.FAILED for i in current),
            cancelled=sum(i.state == ItemState.CANCELLED for i in current),
            waiting=sum(i.state not in FINISHED for i in current),
            bytes_left=sum(i.remaining_bytes for i in current))

    @property
    def closed(self) -> bool:
        return self._closed

    def active(self) -> bool:
        with self._lock:
            return any(i.state not in FINISHED for i in self._items.values())

    # -- steering ----------------------------------------------------------------------

    def add(self, requests: Sequence[CaptureRequest]) -> list[int]:
        """Queue requests behind those already waiting; returns their keys."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the capture queue is closed")
            self._start_run_if_idle()
            keys = []
            for request in requests:
                key = self._next_key
                self._next_key += 1
                self._items[key] = QueueItem(key, request, run=self._run)
                self._cancels[key] = threading.Event()
                self._pending.append(key)
                keys.append(key)
            self._ensure_worker()
            self._wake.notify()
        self._notify()
        return keys

    def cancel(self, key: int) -> None:
        """Skip a queued item, or stop the one being copied (nothing of it is kept)."""
        with self._lock:
            self._cancel_locked(key)
        self._notify()

    def cancel_all(self) -> None:
        with self._lock:
            for key in list(self._items):
                self._cancel_locked(key)
        self._notify()

    def retry(self, key: int) -> bool:
        """Queue a failed or cancelled item again (at the back); False if it is not one."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item.state not in RETRYABLE or self._closed:
                return False
            self._start_run_if_idle()
            self._items[key] = dataclasses.replace(item, state=ItemState.QUEUED, done_bytes=0,
                                                   error=None, run=self._run, cancelling=False)
            self._cancels[key] = threading.Event()
            self._pending.append(key)
            self._ensure_worker()
            self._wake.notify()
        self._notify()
        return True

    def clear_finished(self) -> None:
        """Forget done, failed and cancelled items (the panel's *Clear finished*)."""
        with self._lock:
            for key in [k for k, i in self._items.items() if i.state in FINISHED]:
                del self._items[key]
                self._cancels.pop(key, None)
        self._notify()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Cancel everything and wait for the worker; True if it ended within ``timeout``."""
        with self._lock:
            self._closed = True
            for key in list(self._items):
                self._cancel_locked(key)
            self._wake.notify_all()
            thread = self._thread
        self._notify()
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- inside ------------------------------------------------------------------------

    def _start_run_if_idle(self) -> None:
        if not any(i.state not in FINISHED for i in self._items.values()):
            self._run += 1

    def _cancel_locked(self, key: int) -> None:
        item = self._items.get(key)
        if item is None or item.state in FINISHED:
            return
        self._cancels[key].set()
        if item.state == ItemState.QUEUED:
            self._items[key] = dataclasses.replace(item, state=ItemState.CANCELLED)
        else:
            self._items[key] = dataclasses.replace(item, cancelling=True)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="capture-queue",
                                            daemon=True)
            self._thread.start()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a broken view must not stop capture
                log.exception("a capture queue listener failed")

    def _next(self) -> Optional[tuple[QueueItem, threading.Event]]:
        """The next queued item, marked capturing; None once closed."""
        with self._lock:
            while True:
                while self._pending:
                    key = self._pending.popleft()
                    item = self._items.get(key)
                    if item is not None and item.state == ItemState.QUEUED:
                        item = dataclasses.replace(item, state=ItemState.CAPTURING)
                        self._items[key] = item
                        return item, self._cancels[key]
                if self._closed:
                    return None
                self._wake.wait()

    def _work(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while True:
            taken = self._next()
            if taken is None:
                return
            self._notify()
            self._capture_one(*taken)

    def _capture_one(self, item: QueueItem, cancel: threading.Event) -> None:
        key = item.key

        def progress(done: int, _total: Optional[int] = None) -> None:
            if cancel.is_set():
                raise CaptureCancelled("capture cancelled")
            self._update(key, done_bytes=done)
            # Checked again: a cancel that came while the listeners ran still counts.
            if cancel.is_set():
                raise CaptureCancelled("capture cancelled")

        try:
            if cancel.is_set():
                raise CaptureCancelled("capture cancelled")
            datapoint_id = self._capture(item.request, progress)
        except CaptureCancelled:
            log.info("capture of %s cancelled; nothing of it was kept", item.request.path)
            self._update(key, state=ItemState.CANCELLED, cancelling=False)
        except Exception as exc:  # noqa: BLE001 - the reason goes to the panel
            log.warning("capture of %s failed: %s", item.request.path, exc)
            self._update(key, state=ItemState.FAILED, cancelling=False,
                         error=self._describe_error(exc))
        else:
            self._update(key, state=ItemState.DONE, cancelling=False, datapoint_id=datapoint_id,
                         done_bytes=item.request.size)

    def _update(self, key: int, **changes: Any) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return
            self._items[key] = dataclasses.replace(item, **changes)
        self._notify()


def requests_for(files: Sequence[tuple[Path, int, Optional[str]]], *, label: str,
                 names: Mapping[str, str], metadata: Mapping[str, str],
                 relative_key: str) -> list[CaptureRequest]:
    """One request per file (path, size, path inside a dropped folder or None): a file from
    a dropped folder keeps where it sat in it, as its default label (what the table shows)
    and in custom metadata under ``relative_key`` (searchable)."""
    requests = []
    for path, size, relative in files:
        extra = {relative_key: relative} if relative else {}
        requests.append(CaptureRequest(path=path, size=size,
                                       label=label or relative or path.name,
                                       names=dict(names), metadata={**metadata, **extra}))
    return requests
