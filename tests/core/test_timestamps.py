"""Time semantics (app.core.timestamps): naive is the bench's local wall time, the sent
form comes back, instants order, people read local time with its zone.

The bench's zone follows ``TZ`` (as the C library does); tests set it with monkeypatch,
which restores it, and never call ``time.tzset()`` in this process.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app import DataClient, ValueDataPoint
from app.core.config import save_section
from app.core.errors import ValidationError
from app.core.models import DataPoint
from app.core.paths import bench_paths
from app.core.schema import migrate, schema_version
from app.core.site import LockedSettingError
from app.core.timestamps import (
    INSTANT_FIELD,
    bench_zone,
    format_canonical,
    format_local,
    lab_zone,
    local_now,
    madsci_text,
    parse_timestamp,
    to_canonical,
)
from app.service import BenchService
from sync.documents import central_document, local_datapoint
from sync.settings import CentralSettings

CHICAGO = "America/Chicago"
UTC = timezone.utc


@pytest.fixture
def chicago(monkeypatch: pytest.MonkeyPatch) -> ZoneInfo:
    monkeypatch.setenv("TZ", CHICAGO)
    return ZoneInfo(CHICAGO)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- the rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("tz", [CHICAGO, ":America/Chicago", "/usr/share/zoneinfo/America/Chicago"])
def test_the_bench_zone_follows_tz(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if tz.startswith("/") and not Path(tz).exists():
        pytest.skip("no system zone files")
    monkeypatch.setenv("TZ", tz)
    assert bench_zone().utcoffset(datetime(2026, 1, 15)) == timedelta(hours=-6)


def test_a_tz_that_names_no_zone_falls_back_to_the_os_rules(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Not/A_Zone")
    assert bench_zone() is None
    # Still an instant, by the operating system's rules.
    assert parse_timestamp("2026-01-15T06:00:00").tzinfo is UTC


CHICAGO_CASES = [
    # naive wall time, the true instant
    ("winter (CST, UTC-6)", "2026-01-15T06:00:00", utc(2026, 1, 15, 12)),
    ("summer (CDT, UTC-5)", "2026-07-15T06:00:00", utc(2026, 7, 15, 11)),
    ("last minute before spring forward", "2026-03-08T01:59:00", utc(2026, 3, 8, 7, 59)),
    ("first minute after spring forward", "2026-03-08T03:00:00", utc(2026, 3, 8, 8)),
    # 02:30 does not exist that night: read with the offset before the change (= 03:30 CDT).
    ("skipped hour", "2026-03-08T02:30:00", utc(2026, 3, 8, 8, 30)),
    # 01:30 happens twice on 1 Nov: its first occurrence (still CDT) is taken.
    ("repeated hour", "2026-11-01T01:30:00", utc(2026, 11, 1, 6, 30)),
    ("after fall back", "2026-11-01T02:30:00", utc(2026, 11, 1, 8, 30)),
    ("date only is local midnight", "2026-01-15", utc(2026, 1, 15, 6)),
    ("an offset is exact", "2026-01-15T06:00:00+01:00", utc(2026, 1, 15, 5)),
    ("Z is UTC", "2026-01-15T06:00:00Z", utc(2026, 1, 15, 6)),
]


@pytest.mark.parametrize("case, text, instant", CHICAGO_CASES, ids=[c[0] for c in CHICAGO_CASES])
def test_naive_is_the_bench_local_wall_time(chicago: ZoneInfo, case: str, text: str,
                                            instant: datetime) -> None:
    assert parse_timestamp(text) == instant
    assert ValueDataPoint(value=1, data_timestamp=text).data_instant == instant
    # Queries read naive times the same way.
    assert to_canonical(text) == format_canonical(instant)


def test_the_second_occurrence_of_a_repeated_hour_needs_fold(chicago: ZoneInfo) -> None:
    second = datetime(2026, 11, 1, 1, 30, fold=1)
    assert parse_timestamp(second) == utc(2026, 11, 1, 7, 30)
    # datetime.now() sets fold itself: local_now() keeps it, so its instant is now's.
    moment = local_now()
    assert moment.tzinfo is None
    assert parse_timestamp(moment) == moment.replace(tzinfo=chicago).astimezone(UTC)


MADSCI_FORMS = [
    # what MADSci 0.8.1's pydantic models write (observed with madsci-client 0.8.1)
    (datetime(2025, 1, 2, 3, 4, 5, 123456), "2025-01-02T03:04:05.123456"),
    (datetime(2025, 1, 2, 3, 4, 5), "2025-01-02T03:04:05"),
    (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05Z"),
    (datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), "2025-01-02T03:04:05.500000Z"),
    (datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=-6))),
     "2025-01-02T03:04:05.120000-06:00"),
    (datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=5))), "2025-01-01T00:00:00+05:00"),
]


@pytest.mark.parametrize("moment, text", MADSCI_FORMS)
def test_the_sent_form_is_written_as_madsci_writes_it(moment: datetime, text: str) -> None:
    assert madsci_text(moment) == text
    datapoint = DataPoint.discriminate({"data_type": "json", "value": 1, "data_timestamp": text})
    assert datapoint.data_timestamp == moment and datapoint.to_document()["data_timestamp"] == text


def test_people_read_local_time_with_its_zone(chicago: ZoneInfo) -> None:
    assert format_local("2026-01-15T12:00:00.000000Z") == "2026-01-15 06:00:00 CST"
    assert format_local(utc(2026, 7, 15, 11)) == "2026-07-15 06:00:00 CDT"
    assert format_local(datetime(2026, 7, 15, 6), seconds=False) == "2026-07-15 06:00 CDT"
    assert format_local("not a time") == "not a time"


def test_the_window_and_the_cli_show_times_the_same_way(chicago: ZoneInfo,
                                                         client: DataClient) -> None:
    from app.commands.output import summary_line
    from app.core.rows import datapoint_summary
    from app.ui.formatting import local_time

    datapoint = client.submit_datapoint(
        ValueDataPoint(value=1, data_timestamp="2026-01-15T06:00:00"))
    assert local_time("2026-01-15T12:00:00.000000Z") == "2026-01-15 06:00:00 CST"
    assert summary_line(datapoint_summary(datapoint)).startswith("2026-01-15 06:00:00 CST  ")


# -- the store -----------------------------------------------------------------------------


def test_the_store_keeps_the_sent_form_and_the_instant(chicago: ZoneInfo,
                                                       client: DataClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    naive = client.submit_datapoint(ValueDataPoint(value=1, data_timestamp="2026-07-15T06:00:00"))
    aware = client.submit_datapoint(
        ValueDataPoint(value=2, data_timestamp="2026-07-15T06:00:00.250000+02:00"))
    with client.service.store.reader() as conn:
        rows = dict(conn.execute("SELECT id, data_timestamp || ' ' || data_timestamp_sent "
                                 "FROM datapoints").fetchall())
    assert rows[naive.datapoint_id] == "2026-07-15T11:00:00.000000Z 2026-07-15T06:00:00"
    assert rows[aware.datapoint_id] == (
        "2026-07-15T04:00:00.250000Z 2026-07-15T06:00:00.250000+02:00")
    # Read back in another zone: the naive time is what was sent, the instant as recorded.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    back = client.get_datapoint(naive.datapoint_id)
    assert back.data_timestamp == datetime(2026, 7, 15, 6)
    assert back.data_instant == utc(2026, 7, 15, 11)
    assert client.get_datapoint(aware.datapoint_id).to_document()["data_timestamp"] == (
        "2026-07-15T06:00:00.250000+02:00")
    # Newest first is true time order (the aware one is earlier), whatever the forms.
    assert [d.datapoint_id for d in client.get_datapoints(0)] == [naive.datapoint_id,
                                                                  aware.datapoint_id]
    # Exports carry both: as sent, and the UTC instant.
    assert client.export({}, Path(client.service.paths.data_dir) / "out.csv") == 2
    with open(Path(client.service.paths.data_dir) / "out.csv", encoding="utf-8") as exported:
        rows = {row["datapoint_id"]: row for row in csv.DictReader(exported)}
    assert (rows[naive.datapoint_id]["data_timestamp"],
            rows[naive.datapoint_id]["data_timestamp_utc"]) == (
        "2026-07-15T06:00:00", "2026-07-15T11:00:00.000000Z")


def test_rows_stored_before_v5_stay_utc_instants(tmp_path: Path, chicago: ZoneInfo) -> None:
    conn = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    migrate(conn, target=4)
    conn.execute(
        "INSERT INTO datapoints (id, label, data_type, data_timestamp, value, custom_metadata, "
        "extra, created_at, updated_at) VALUES ('01JD3Q9V6X5J8Z0K2M4N6P8R0A', 'old', 'json', "
        "'2025-05-01T10:00:00.000000Z', '21', '{}', '{}', '2025-05-01T10:00:00.000000Z', "
        "'2025-05-01T10:00:00.000000Z')")
    conn.close()
    with DataClient(data_dir=tmp_path) as client:
        old = client.get_datapoint("01JD3Q9V6X5J8Z0K2M4N6P8R0A")
        # Same instant, marked aware: answered as UTC, which is what it was stored as.
        assert old.data_timestamp == utc(2025, 5, 1, 10)
        assert old.to_document()["data_timestamp"] == "2025-05-01T10:00:00Z"
        assert old.data_instant == utc(2025, 5, 1, 10)
        assert client.query_datapoints({"data_timestamp": "2025-05-01T05:00:00"}).keys() == {
            "01JD3Q9V6X5J8Z0K2M4N6P8R0A"}  # 05:00 CDT
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    assert schema_version(conn) >= 5
    assert conn.execute("SELECT data_timestamp_sent FROM datapoints").fetchone() == (None,)
    conn.close()


# -- central documents -----------------------------------------------------------------------


def _central_document(service: BenchService, datapoint_id: str) -> dict:
    from sync.localrows import fetch_rows

    row = fetch_rows(service.store, [datapoint_id])[datapoint_id]
    return central_document(row, bench_id="bench-1", stored_object=None,
                            settings=CentralSettings())


def test_central_documents_carry_what_madsci_stores_plus_the_instant(
        chicago: ZoneInfo, client: DataClient) -> None:
    naive = client.submit_datapoint(ValueDataPoint(value=1, data_timestamp="2026-03-08T03:30:00"))
    aware = client.submit_datapoint(ValueDataPoint(value=1, data_timestamp="2026-03-08T03:30:00Z"))
    document = _central_document(client.service, naive.datapoint_id)
    assert document["data_timestamp"] == "2026-03-08T03:30:00"
    assert document[INSTANT_FIELD] == "2026-03-08T08:30:00.000000Z"
    document = _central_document(client.service, aware.datapoint_id)
    assert document["data_timestamp"] == "2026-03-08T03:30:00Z"
    assert document[INSTANT_FIELD] == "2026-03-08T03:30:00.000000Z"


def test_pulled_documents_keep_their_form_and_instant(chicago: ZoneInfo) -> None:
    from_bench = {"_id": "01JD3Q9V6X5J8Z0K2M4N6P8R0A", "data_type": "json", "value": 1,
                  "data_timestamp": "2026-03-08T03:30:00",
                  INSTANT_FIELD: "2026-03-08T12:30:00.000000Z"}  # a bench in another zone
    datapoint, _ = local_datapoint(from_bench)
    assert datapoint.data_timestamp == datetime(2026, 3, 8, 3, 30)
    assert datapoint.data_instant == utc(2026, 3, 8, 12, 30)
    assert INSTANT_FIELD not in datapoint.to_document()
    # MADSci wrote it: naive, read in the lab's zone.
    from_madsci = {k: v for k, v in from_bench.items() if k != INSTANT_FIELD}
    assert local_datapoint(from_madsci)[0].data_instant == utc(2026, 3, 8, 8, 30)
    berlin = ZoneInfo("Europe/Berlin")
    assert local_datapoint(from_madsci, lab_zone=berlin)[0].data_instant == utc(2026, 3, 8, 2, 30)
    # A BSON date (not MADSci's own form) is a UTC instant.
    as_date = {**from_madsci, "data_timestamp": datetime(2026, 3, 8, 3, 30)}
    assert local_datapoint(as_date)[0].data_instant == utc(2026, 3, 8, 3, 30)


# -- the lab zone setting --------------------------------------------------------------------


def test_the_lab_zone_defaults_to_the_bench_zone_and_can_be_set_or_locked(
        chicago: ZoneInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = bench_paths()
    assert lab_zone(paths) == chicago
    save_section(paths, "time", {"lab_zone": "Europe/Berlin"})
    assert lab_zone(paths) == ZoneInfo("Europe/Berlin")
    save_section(paths, "time", {"lab_zone": "Mars/Olympus"})
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        lab_zone(paths)
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"time": {"lab_zone": "America/Denver"},
                                "locked": ["time.lab_zone"]}), encoding="utf-8")
    monkeypatch.setenv("BENCHDATA_SITE_CONFIG", str(site))
    assert lab_zone(paths) == ZoneInfo("America/Denver")
    with pytest.raises(LockedSettingError):
        save_section(paths, "time", {"lab_zone": "Europe/Berlin"})


def test_the_cli_shows_and_sets_the_lab_zone(chicago: ZoneInfo, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()
    shown = runner.invoke(cli, ["time-zone", "--json"], catch_exceptions=False)
    assert json.loads(shown.output) == {"bench_zone": CHICAGO, "lab_zone": CHICAGO}
    changed = runner.invoke(cli, ["time-zone", "--lab", "Europe/Berlin", "--json"],
                            catch_exceptions=False)
    assert json.loads(changed.output)["lab_zone"] == "Europe/Berlin"
    assert lab_zone(bench_paths()) == ZoneInfo("Europe/Berlin")
    refused = runner.invoke(cli, ["time-zone", "--lab", "Mars/Olympus"])
    assert refused.exit_code == 1 and "unknown time zone 'Mars/Olympus'" in refused.output
    # Listing shows local time with its zone.
    runner.invoke(cli, ["add", "value", "1", "--timestamp", "2026-07-15T06:00:00"],
                  catch_exceptions=False)
    listed = runner.invoke(cli, ["list"], catch_exceptions=False)
    assert "2026-07-15 06:00:00 CDT" in listed.output
