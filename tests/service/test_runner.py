"""HeadlessRunner: the one component lifecycle (``benchdata run`` and the window's hosted
mode), including ``reload`` — applying saved settings to one component while it runs.

The components here are small stand-ins: this tests the runner's bookkeeping, not the
components (their own tests run them for real)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from app.runner import HeadlessRunner, RunOptions
from app.service import BenchService


class Part:
    """A component that counts what the runner asks of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = self.stopped = self.edits_applied = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def apply_settings_edits(self) -> None:
        self.edits_applied += 1


class Factory:
    """Builds ``Part(name)`` while ``enabled`` (a switched-off component builds None)."""

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.name, self.enabled = name, enabled
        self.built: list[Part] = []

    def __call__(self, _service: BenchService, _options: RunOptions) -> Optional[Part]:
        if not self.enabled:
            return None
        part = Part(self.name)
        self.built.append(part)
        return part


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "store") as bench:
        yield bench


def test_reload_hands_saved_settings_to_the_running_component(service: BenchService) -> None:
    watch, sync = Factory("watch"), Factory("sync")
    runner = HeadlessRunner(service, RunOptions(), factories=[watch, sync])
    runner.start()
    try:
        assert runner.reload("sync") is sync.built[0]
        assert sync.built[0].edits_applied == 1 and watch.built[0].edits_applied == 0
        assert len(sync.built) == 1 and sync.built[0].started == 1  # not rebuilt
    finally:
        runner.stop()
    assert sync.built[0].stopped == 1


def test_reload_starts_a_component_that_was_not_running(service: BenchService) -> None:
    sync = Factory("sync", enabled=False)
    runner = HeadlessRunner(service, RunOptions(), factories=[sync])
    runner.start()
    try:
        assert runner.components == []
        assert runner.reload("sync") is None  # still switched off: stays off
        sync.enabled = True
        started = runner.reload("sync")
        assert started is sync.built[0] and started.started == 1
        assert runner.components == [started]
        assert runner.reload("sync") is started and len(sync.built) == 1
        assert started.edits_applied == 1
    finally:
        runner.stop()
    assert sync.built[0].stopped == 1  # the runner stops what reload started


def test_reload_does_nothing_before_start_or_after_stop(service: BenchService) -> None:
    sync = Factory("sync")
    runner = HeadlessRunner(service, RunOptions(), factories=[sync])
    assert runner.reload("sync") is None and sync.built == []
    runner.start()
    runner.stop()
    assert runner.reload("sync") is None
    assert len(sync.built) == 1 and sync.built[0].stopped == 1


def test_a_reload_during_start_waits_for_it(service: BenchService) -> None:
    """The window may apply settings while its components are still starting (on another
    thread): the component starts once, and the reload then applies the edits."""
    entered, release = threading.Event(), threading.Event()

    class Slow(Factory):
        def __call__(self, service: BenchService, options: RunOptions) -> Optional[Part]:
            entered.set()
            assert release.wait(30)
            return super().__call__(service, options)

    sync = Slow("sync")
    runner = HeadlessRunner(service, RunOptions(), factories=[sync])
    starting = threading.Thread(target=runner.start)
    starting.start()
    try:
        assert entered.wait(30)
        found: list[Any] = []
        reloading = threading.Thread(target=lambda: found.append(runner.reload("sync")))
        reloading.start()
        release.set()
        starting.join(30)
        reloading.join(30)
        assert len(sync.built) == 1 and sync.built[0].started == 1
        assert found == [sync.built[0]] and sync.built[0].edits_applied == 1
    finally:
        release.set()
        runner.stop()
