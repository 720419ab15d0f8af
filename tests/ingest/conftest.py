"""Fixtures for the folder-watcher tests: a real store, real folders, real observers.

Nothing sleeps blindly: tests wait for conditions (an event, a count) with timeouts. To
show that something did *not* happen, a test forces a full reconcile scan and waits for
it to finish, then looks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, TypeVar

import pytest
from tests.support.waiting import wait_until as wait_for

from app.core.models import DataPoint
from app.ingest.component import IngestComponent
from app.ingest.rules import WatchRule
from app.ingest.watcher import IngestEvent, WorkerOptions
from app.service import BenchService

T = TypeVar("T")

#: Fast timing knobs for tests (the defaults are for instruments, not CI).
FAST = WorkerOptions(liveness_interval=0.1, retry_base=0.2, retry_max=1.0, marker_recheck=0.05)


class Harness:
    """A running IngestComponent for one rule, with the events it reported."""

    def __init__(self, component: IngestComponent, rule: WatchRule) -> None:
        self.component = component
        self.rule = rule
        self._events: list[IngestEvent] = []
        self._lock = threading.Lock()
        component.add_listener(self._record)

    def _record(self, event: IngestEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[IngestEvent]:
        with self._lock:
            return list(self._events)

    def of_kind(self, kind: str, rel_path: Optional[str] = None) -> list[IngestEvent]:
        return [e for e in self.events
                if e.kind == kind and (rel_path is None or e.rel_path == rel_path)]

    def captured(self, rel_path: Optional[str] = None) -> list[DataPoint]:
        return [e.datapoint for e in self.of_kind("captured", rel_path) if e.datapoint]

    def wait_captured(self, count: int = 1, rel_path: Optional[str] = None,
                      timeout: float = 15.0) -> list[DataPoint]:
        wait_for(lambda: len(self.captured(rel_path)) >= count, timeout,
                 what=f"{count} capture(s) of {rel_path or 'any file'}")
        return self.captured(rel_path)

    def wait_event(self, kind: str, rel_path: Optional[str] = None,
                   timeout: float = 15.0) -> IngestEvent:
        return wait_for(lambda: (self.of_kind(kind, rel_path) or [None])[-1], timeout,
                        what=f"a {kind!r} event for {rel_path or 'the rule'}")

    def wait_first_scan(self, timeout: float = 15.0) -> None:
        self.wait_event("scan_done", timeout=timeout)

    def rescan_and_wait(self, timeout: float = 30.0) -> None:
        """Force a full reconcile scan, wait until it is done and the worker settled."""
        before = len(self.of_kind("scan_done"))
        self.component.rescan(self.rule.id)
        wait_for(lambda: len(self.of_kind("scan_done")) > before, timeout,
                 what="a rescan to finish")
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until nothing waits in the quiet tracker (everything seen is captured)."""
        wait_for(lambda: self.status().waiting == 0, timeout, what="the watcher to be idle")

    def status(self) -> Any:
        return self.component.worker(self.rule.id).status()

    def stop(self) -> None:
        self.component.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "store") as bench:
        yield bench


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "instrument"
    folder.mkdir()
    return folder


@pytest.fixture
def start_watch(service: BenchService, watched: Path) -> Iterator[Callable[..., Harness]]:
    """``start_watch(**rule_fields)`` starts a watcher (quiet 0.3 s unless given)."""
    running: list[IngestComponent] = []

    def start(**fields: Any) -> Harness:
        fields.setdefault("id", "rule1")
        fields.setdefault("path", str(watched))
        fields.setdefault("quiet_seconds", 0.3)
        fields.setdefault("observer", "native")
        rule = WatchRule(**fields)
        component = IngestComponent(service, [rule], options=FAST)
        harness = Harness(component, rule)
        component.start()
        running.append(component)
        return harness

    yield start
    for component in running:
        component.stop()


@pytest.fixture
def wait() -> Callable[..., Any]:
    """The ``wait_for`` helper, for tests that wait on something other than a harness."""
    return wait_for
