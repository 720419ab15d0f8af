"""A write a reader passed while it was in flight still reaches every bench (``sync.stamps``).

A pull re-reads only ``pull_overlap_s`` behind its cursor. A central write stamped at T
that becomes readable later can be passed by a reader whose cursor moved beyond T
meanwhile (another bench's later write committed first). The writer times its writes and
stamps a slow one again, so the reader's next pass finds it. The in-memory central store
can hold a write in flight (``MemoryCentral.commit_late``), which shows the hazard and
the cure; against nx-27017 a relay holds the server's replies back, and the bench must
stamp its write again before it confirms it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.core.models import ValueDataPoint
from app.service import BenchService
from sync import pull as pull_module
from sync import push as push_module
from sync import stamps
from sync.engine import PassReport, SyncEngine
from sync.fleet import server_time
from sync.memory_backend import MemoryCentral, MemoryCollection
from sync.outbox import Outbox
from sync.pull import DATAPOINTS_CURSOR, Cursor
from sync.settings import CentralSettings
from sync.central import CentralDatabase
from tests.support.proxy import Relay
from tests.sync.central_stores import MEMORY_BUCKET, memory_settings
from tests.support.waiting import wait_until

#: The write bound these tests narrow to, and the overlap readers use (the least allowed).
BOUND = 0.2
#: How long a slow write stays in flight: well past the bound and the overlap.
IN_FLIGHT = 1.5

Pair = tuple[BenchService, SyncEngine]


@pytest.fixture(autouse=True)
def narrow_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stamps, "WRITE_BOUND_S", BOUND)


@pytest.fixture
def memory() -> MemoryCentral:
    return MemoryCentral(buckets=[MEMORY_BUCKET])


@pytest.fixture
def three(tmp_path: Path, memory: MemoryCentral) -> Iterator[list[Pair]]:
    """A writer, another writer and a reader on one in-memory central store."""
    settings = memory_settings(pull_overlap_s=BOUND)
    pairs: list[Pair] = []
    try:
        for name in ("writer", "other", "reader"):
            service = BenchService(tmp_path / name)
            pairs.append((service, SyncEngine(service, settings, backends=memory.backends())))
        yield pairs
    finally:
        for service, engine in pairs:
            engine.close()
            service.close()


def _never_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench as it was before the bound: no write is ever stamped again."""
    monkeypatch.setattr(stamps.WriteTimer, "slow", property(lambda _timer: False))


def _passed_in_flight(memory: MemoryCentral, writer: Pair, other: Pair, reader: Pair,
                      later_write: Callable[[], None], *, operation: str = "bulk_write",
                      pull: bool = False) -> PassReport:
    """The writer's next ``operation`` (in a pass of its own) is stamped and stays in
    flight; meanwhile ``later_write`` (the other bench) lands, stamped well after it, and
    the reader pulls past both stamps. Returns the writer's report once its write is done
    (re-raising what its pass raised); the reader then pulls again."""
    memory.commit_late(IN_FLIGHT)
    reports: list[PassReport] = []
    raised: list[BaseException] = []

    def write() -> None:
        try:
            reports.append(writer[1].run_pass(force=True, pull=pull))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    writes = memory.calls.get(operation, 0)
    thread = threading.Thread(target=write)
    thread.start()
    wait_until(lambda: memory.calls.get(operation, 0) > writes, timeout=10,
               what="the writer's write to start")
    stamped = memory.now()
    wait_until(lambda: memory.now() > stamped + timedelta(seconds=3 * BOUND), timeout=10,
               what="the in-flight write to lie beyond the overlap")
    later_write()
    assert other[1].run_pass(force=True, pull=False).ok
    assert reader[1].run_pass(force=True).ok  # its cursor passes the writer's stamp
    thread.join(timeout=30)
    assert not thread.is_alive(), "the writer's pass did not finish"
    if raised:
        raise raised[0]
    assert reader[1].run_pass(force=True).ok
    return reports[0]


@pytest.mark.parametrize("stamped_again", [True, False], ids=["bounded", "unbounded"])
def test_a_record_written_slowly_is_stamped_again_and_reaches_a_reader_that_passed_it(
        three: list[Pair], memory: MemoryCentral, monkeypatch: pytest.MonkeyPatch,
        stamped_again: bool) -> None:
    writer, other, reader = three
    if not stamped_again:
        _never_slow(monkeypatch)
    slow = writer[0].submit(ValueDataPoint(value=1, label="written slowly")).datapoint_id
    report = _passed_in_flight(memory, writer, other, reader, lambda: other[0].submit(
        ValueDataPoint(value=2, label="written later, committed first")))
    assert report.ok and report.confirmed == 1, report
    labels = {d.label for d in reader[0].iter_query({})}
    assert "written later, committed first" in labels
    if stamped_again:
        assert report.restamped == 1, report
        assert reader[0].get(slow).label == "written slowly"
    else:
        # The hazard the bound closes: without a new stamp the reader never sees it.
        assert report.restamped == 0, report
        assert "written slowly" not in labels
        for _ in range(3):
            assert reader[1].run_pass(force=True).ok
        assert "written slowly" not in {d.label for d in reader[0].iter_query({})}


@pytest.mark.parametrize("stamped_again", [True, False], ids=["bounded", "unbounded"])
def test_a_deletion_written_slowly_reaches_a_reader_that_passed_it(
        three: list[Pair], memory: MemoryCentral, monkeypatch: pytest.MonkeyPatch,
        stamped_again: bool) -> None:
    writer, other, reader = three
    doomed = writer[0].submit(ValueDataPoint(value=1, label="deleted slowly")).datapoint_id
    later = other[0].submit(ValueDataPoint(value=2, label="deleted later")).datapoint_id
    for _service, engine in three:
        assert engine.run_pass(force=True).ok
    assert reader[0].get_stored(doomed) is not None and reader[0].get_stored(later) is not None
    if not stamped_again:
        _never_slow(monkeypatch)
    writer[0].delete(doomed)
    report = _passed_in_flight(memory, writer, other, reader,
                               lambda: other[0].delete(later))
    assert report.ok and report.confirmed == 1, report
    ids = {d.datapoint_id for d in reader[0].iter_query({})}
    assert later not in ids
    assert (doomed not in ids) == stamped_again
    assert report.restamped == (1 if stamped_again else 0), report


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def test_a_bench_killed_before_stamping_a_slow_write_again_does_it_when_it_restarts(
        three: list[Pair], memory: MemoryCentral, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    writer, other, reader = three

    def killed(*_args: Any, **_kwargs: Any) -> bool:
        raise Killed()

    monkeypatch.setattr(push_module, "stamp_again", killed)
    slow = writer[0].submit(ValueDataPoint(value=1, label="written slowly")).datapoint_id
    with pytest.raises(Killed):
        _passed_in_flight(memory, writer, other, reader, lambda: other[0].submit(
            ValueDataPoint(value=2, label="written later")))
    assert writer[0].get_stored(slow).sync_state != "confirmed"
    monkeypatch.undo()
    monkeypatch.setattr(stamps, "WRITE_BOUND_S", BOUND)
    settings = writer[1].settings
    writer[1].close()
    with SyncEngine(writer[0], settings, backends=memory.backends()) as restarted:
        report = restarted.run_pass(force=True, pull=False)
    # Its record was in place, written by a write of unknown length: stamped again.
    assert report.ok and report.confirmed == 1 and report.restamped == 1, report
    assert writer[0].get_stored(slow).sync_state == "confirmed"
    assert reader[1].run_pass(force=True).ok
    assert reader[0].get(slow).label == "written slowly"


@pytest.mark.parametrize("killed", [False, True], ids=["running", "killed-before-new-stamp"])
def test_documents_madsci_wrote_stamped_slowly_are_stamped_again(
        three: list[Pair], memory: MemoryCentral, monkeypatch: pytest.MonkeyPatch,
        killed: bool) -> None:
    writer, other, reader = three
    # The writer is the fleet's stamper; the reader only reads (a forced pass would stamp).
    monkeypatch.setattr(reader[1], "_stamp_due", lambda _force: False)
    if killed:
        def dies(*_args: Any, **_kwargs: Any) -> bool:
            raise Killed()

        monkeypatch.setattr(pull_module, "stamp_again", dies)
    records = memory.backends().records(writer[1].settings)
    records.datapoints.insert({"_id": "01KBZ4T8P2D3QF9V6X7Y8Z9A0B", "label": "from MADSci",
                               "data_type": "json", "value": {"t": 23.5}})

    def in_flight() -> PassReport:  # the stamper's stamp write
        return _passed_in_flight(memory, writer, other, reader, lambda: other[0].submit(
            ValueDataPoint(value=2, label="written later")), operation="update_many",
            pull=True)

    if killed:
        with pytest.raises(Killed):
            in_flight()
        monkeypatch.setattr(pull_module, "stamp_again", stamps.stamp_again)
        settings = writer[1].settings
        writer[1].close()
        with SyncEngine(writer[0], settings, backends=memory.backends()) as restarted:
            assert restarted.run_pass(force=True).ok  # finishes the stamping it remembers
        assert reader[1].run_pass(force=True).ok
    else:
        assert in_flight().ok
    assert "from MADSci" in {d.label for d in reader[0].iter_query({})}


# -- against nx-27017 -----------------------------------------------------------------------


def _stamp_of(central: CentralSettings, ident: str) -> datetime:
    with CentralDatabase(central) as database:
        return database.datapoints.find_one({"_id": ident})["sync_written_at"]


def test_a_slow_reply_from_nx_27017_gets_the_record_stamped_again_before_it_is_confirmed(
        tmp_path: Path, central: Any, mongo: Any) -> None:
    """nx-27017 applies the write at once; its reply comes late. The bench cannot tell a
    late reply from a late commit, so it stamps the record again; while every write is
    slow it keeps the item unconfirmed, and confirms it once a stamp write is quick."""
    with Relay(("127.0.0.1", int(mongo.port))) as relay, \
            BenchService(tmp_path / "bench") as bench:
        settings = central.model_copy(
            update={"mongo_url": SecretStr(f"mongodb://127.0.0.1:{relay.port}/"),
                    "pull_overlap_s": BOUND})
        with SyncEngine(bench, settings) as engine:
            assert engine.run_pass(force=True).ok  # connected, indexes made
            ident = bench.submit(ValueDataPoint(value=1, label="slow")).datapoint_id
            relay.reply_delay_s = 2 * BOUND
            report = engine.run_pass(force=True, pull=False)
            assert not report.ok and report.confirmed == 0 and report.retrying == 1, report
            assert any("took" in error and "to write" in error for error in report.errors)
            assert bench.get_stored(ident).sync_state != "confirmed"
            first = _stamp_of(central, ident)  # the record is there, its stamp old
            with CentralDatabase(central) as database:
                slow_ended = server_time(database)
            assert slow_ended is not None
            relay.reply_delay_s = 0.0
            report = engine.run_pass(force=True, pull=False)
            assert report.ok and report.confirmed == 1 and report.restamped == 1, report
    assert bench_state(tmp_path / "bench", ident) == "confirmed"
    assert _stamp_of(central, ident) > max(first, slow_ended)


def bench_state(data_dir: Path, ident: str) -> str:
    with BenchService(data_dir) as bench:
        return bench.get_stored(ident).sync_state


def test_a_pass_that_read_for_a_while_re_reads_that_much_more_next_time(
        three: list[Pair], memory: MemoryCentral, monkeypatch: pytest.MonkeyPatch) -> None:
    """A document passed at a pass's first page commits within the bound of its stamp,
    but the cursor moves on for as long as the pass reads: the next pass starts that much
    earlier (``sync.pull.Cursor.span_s``)."""
    _writer, other, reader = three
    other[0].submit_many([ValueDataPoint(value=i, label=f"v{i}") for i in range(7)])
    assert other[1].run_pass(force=True, pull=False).ok
    reader[1].settings = reader[1].settings.model_copy(update={"pull_page_size": 2})
    pages: list[dict[str, Any]] = []
    unslowed = MemoryCollection.find

    def slow_pages(self: MemoryCollection, filter: Any, *args: Any, **kwargs: Any) -> Any:
        found = unslowed(self, filter, *args, **kwargs)
        if self.name == "datapoints" and kwargs.get("sort"):
            pages.append(filter)
            memory_clock_passes(memory, 0.1)  # a loaded server: each page takes a while
        return found

    monkeypatch.setattr(MemoryCollection, "find", slow_pages)
    assert reader[1].run_pass(force=True).ok
    assert len(pages) >= 4 and reader[0].count({}) == 7
    cursor = Cursor.parse(Outbox(reader[0].store).meta(DATAPOINTS_CURSOR))
    assert cursor is not None and not cursor.settled and cursor.span_s >= 0.3, cursor
    pages.clear()
    assert reader[1].run_pass(force=True).ok
    window_start = pages[0]["sync_written_at"]["$gte"]
    assert window_start == cursor.position[0] - timedelta(seconds=BOUND + cursor.span_s)


def memory_clock_passes(memory: MemoryCentral, seconds: float) -> None:
    moment = memory.now()
    wait_until(lambda: memory.now() >= moment + timedelta(seconds=seconds), timeout=10,
               what="the central clock to move on")


def test_a_lab_with_a_slow_store_raises_the_overlap_and_with_it_the_bound(
        tmp_path: Path, memory: MemoryCentral) -> None:
    """The bound is half the lab's overlap (at least the least bound): a write slower than
    the least bound but within half the overlap is not stamped again, and a reader with
    that overlap still finds it."""
    overlap = 10 * BOUND
    settings = memory_settings(pull_overlap_s=overlap)
    with BenchService(tmp_path / "writer") as writer, \
            BenchService(tmp_path / "reader") as reader, \
            SyncEngine(writer, settings, backends=memory.backends()) as writing, \
            SyncEngine(reader, settings, backends=memory.backends()) as reading:
        ident = writer.submit(ValueDataPoint(value=1, label="slow store")).datapoint_id
        memory.commit_late(overlap / 4)  # slower than BOUND, within overlap / 2
        report = writing.run_pass(force=True, pull=False)
        assert report.ok and report.confirmed == 1 and report.restamped == 0, report
        assert reading.run_pass(force=True).ok
        assert reader.get(ident).label == "slow store"
    assert stamps.write_bound_s(overlap) == overlap / 2
    assert stamps.least_overlap_s(BOUND / 2) == BOUND
