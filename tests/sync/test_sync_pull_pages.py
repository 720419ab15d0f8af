"""Pull pages that adapt to what they cost: slow pages (nx-27017 scans every row per keyset
page) grow the next one up to a cap, fast ones shrink back; a grown page is applied in
slices of ``pull_page_size``, so a pull stopped inside one loses at most one slice and a
scoped pull still reads only its scope. Page durations come from an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.core.models import ValueDataPoint
from app.service import BenchService
from tests.support.waiting import wait_until
from tests.sync.fleetcount import counted_engine
from tests.sync.test_sync_fleet import _newest_write
from sync import localrows, pull
from sync.central import CentralDatabase
from sync.engine import SyncEngine
from sync.fleet import server_time
from sync.pagesize import PageSizer
from sync.stamps import WRITE_BOUND_S


class SteppingClock:
    """A clock that moves ``step`` seconds on every reading: each page "takes" ``step``."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def sizers_with(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float],
                cap: int) -> list[PageSizer]:
    """Make the puller's page sizers run on ``clock`` with ``cap``; returns those made."""
    made: list[PageSizer] = []

    def sizer(base: int) -> PageSizer:
        made.append(PageSizer(base, cap=cap, slow_s=1.0, clock=clock))
        return made[-1]

    monkeypatch.setattr(pull, "PageSizer", sizer)
    return made


def test_page_size_grows_when_pages_are_slow_and_shrinks_back_when_fast() -> None:
    clock = SteppingClock(3.0)
    sizer = PageSizer(10, cap=100, slow_s=1.0, clock=clock)
    for _ in range(4):
        sizer.took(sizer.start(), sizer.size)  # full pages taking 3 s each
    assert sizer.asked == [10, 30, 90, 100] and sizer.size == 100
    sizer.took(sizer.start(), 7)  # a short page is the last one: no growth from it
    assert sizer.size == 100
    clock.step = 0.1  # fast pages: back towards the setting, never below it
    for _ in range(5):
        sizer.took(sizer.start(), sizer.size)
    assert sizer.asked[5:] == [100, 50, 25, 12, 10] and sizer.size == 10


def test_slow_pages_grow_to_the_cap_and_a_scoped_pull_stays_in_scope(
        tmp_path: Path, central: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with BenchService(tmp_path / "a") as a, SyncEngine(a, central) as engine_a:
        inside = {a.capture_value(i, label="in", ownership=a.ownership(experiment="EXP1"))
                  .datapoint_id for i in range(60)}
        for i in range(25):
            a.capture_value(i, label="out", ownership=a.ownership(experiment="EXP2"))
        assert engine_a.run_pass(force=True).ok
    sizers = sizers_with(monkeypatch, SteppingClock(3.0), cap=16)
    scoped = central.model_copy(update={"pull_page_size": 4,
                                        "pull_scope": {"experiment": ["EXP1"]}})
    with BenchService(tmp_path / "b") as b, SyncEngine(b, scoped) as engine_b:
        mongo, _s3 = counted_engine(engine_b)
        report = engine_b.run_pass(force=True)
        assert report.ok and report.pulled == 60 and mongo.full_documents == 60, report
        assert {d.datapoint_id for d in b.iter_query({})} == inside
    datapoints = sizers[-1]  # tombstones are pulled first, datapoints last
    assert datapoints.asked == [4, 12, 16, 16, 16], datapoints.asked
    assert max(size for sizer in sizers for size in sizer.asked) <= 16


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def test_a_pull_stopped_inside_a_grown_page_loses_at_most_one_slice(
        tmp_path: Path, central: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    page, total, overlap = 4, 120, WRITE_BOUND_S  # the least overlap a pull uses
    settings = central.model_copy(update={"pull_page_size": page, "pull_overlap_s": overlap})
    with BenchService(tmp_path / "lab") as lab, SyncEngine(lab, settings) as engine:
        ids = {d.datapoint_id for d in lab.submit_many(
            [ValueDataPoint(value=i, label="old") for i in range(total)])}
        assert engine.run_pass(force=True, pull=False).ok
    newest = _newest_write(central)
    with CentralDatabase(central) as database:  # a lab's history is older than the overlap
        wait_until(lambda: (server_time(database) or newest) > newest + timedelta(
            seconds=overlap + 1), timeout=30, what="the seeded data to age past the overlap")
    sizers = sizers_with(monkeypatch, SteppingClock(3.0), cap=40)
    applied = localrows.apply_remote
    stored = 0

    def dies_past_30_rows(*args: Any, **kwargs: Any) -> int:
        nonlocal stored
        if stored >= 30:  # 32 stored: inside the third page (36 entries), its 5th slice
            raise Killed()
        count = applied(*args, **kwargs)
        stored += count
        return count

    monkeypatch.setattr(localrows, "apply_remote", dies_past_30_rows)
    with BenchService(tmp_path / "new") as bench, SyncEngine(bench, settings) as engine:
        killed_run, _s3 = counted_engine(engine)
        with pytest.raises(Killed):
            engine.run_pass(force=True)
        held = bench.count({})
    assert sizers[-1].asked[:3] == [4, 12, 36], sizers[-1].asked
    monkeypatch.setattr(localrows, "apply_remote", applied)
    with BenchService(tmp_path / "new") as bench, SyncEngine(bench, settings) as engine:
        resumed, _s3 = counted_engine(engine)
        report = engine.run_pass(force=True)
        assert report.ok, report
        assert {d.datapoint_id for d in bench.iter_query({})} == ids
    # It starts again at the page size the stopped pull had reached (40, the cap), not 4.
    assert sizers[-1].asked[0] == 40, sizers[-1].asked
    # Work lost to the stop: the one slice it was in (read in full, never stored)...
    assert killed_run.full_documents + resumed.full_documents <= total + page
    # ... and nothing it stored is scanned again: it resumes after its last slice.
    assert report.pull_scanned == total - held
    assert held == 8 * page
