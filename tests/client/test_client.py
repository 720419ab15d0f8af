"""The Python API an automation script uses, end to end, on a real local store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app import (
    ConflictError,
    DataClient,
    FileDataPoint,
    NotFoundError,
    OwnershipInfo,
    QueryError,
    ValueDataPoint,
    name_to_id,
)
from tests.conftest import EXP


def test_issue_example_runs_as_written(tmp_path: Path, run_txt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(run_txt.parent)
    client = DataClient()  # the default store: $BENCHDATA_HOME (set by conftest)
    dp = client.submit_datapoint(ValueDataPoint(label="Temperature", value={"t": 23.5, "unit": "C"},
                                                ownership_info=OwnershipInfo(experiment_id=EXP)))
    f = client.submit_datapoint(FileDataPoint(label="Run log", path="run.txt"))
    assert client.get_datapoint(dp.datapoint_id).label == "Temperature"
    assert client.get_datapoint_value(dp.datapoint_id) == {"t": 23.5, "unit": "C"}
    client.save_datapoint_value(f.datapoint_id, "copy.txt")
    assert (run_txt.parent / "copy.txt").read_bytes() == run_txt.read_bytes()
    assert [d.datapoint_id for d in client.get_datapoints(number=10)] == [f.datapoint_id, dp.datapoint_id]
    found = client.query_datapoints({"ownership_info.experiment_id": EXP, "value.t": {"$gt": 20}})
    assert list(found) == [dp.datapoint_id]
    client.close()
    assert (Path(__import__("os").environ["BENCHDATA_HOME"]) / "data" / "store.sqlite3").exists()


def test_file_datapoint_records_file_facts(client: DataClient, run_txt: Path) -> None:
    stored = client.submit_datapoint(FileDataPoint(label="log", path=str(run_txt)))
    assert stored.filename == "run.txt"
    assert stored.size_bytes == run_txt.stat().st_size
    assert stored.content_type == "text/plain"
    assert stored.sha256 == __import__("hashlib").sha256(run_txt.read_bytes()).hexdigest()
    assert stored.path == str(run_txt)
    assert client.get_datapoint_value(stored.datapoint_id) == run_txt.read_bytes()
    metadata = client.get_datapoint_metadata(stored.datapoint_id)
    assert metadata["size_bytes"] == run_txt.stat().st_size and "value" not in metadata


def test_the_original_file_is_never_touched(client: DataClient, run_txt: Path) -> None:
    before = (run_txt.read_bytes(), run_txt.stat().st_mtime_ns)
    stored = client.submit_datapoint(FileDataPoint(path=str(run_txt)))
    run_txt.write_text("changed later", encoding="utf-8")
    assert before[0] != run_txt.read_bytes()
    assert client.get_datapoint_value(stored.datapoint_id) == before[0]


@pytest.mark.parametrize(
    "value",
    [0, -1.5, 10**18, "text", "", True, False, None, [], {}, [1, "a", None, {"b": [2]}],
     {"unicode": "µ°C ✓", "nested": {"deep": [[1], [2, [3]]]}}],
)
def test_every_json_kind_round_trips(client: DataClient, value: object) -> None:
    stored = client.submit_datapoint(ValueDataPoint(value=value))
    assert client.get_datapoint_value(stored.datapoint_id) == value
    assert type(client.get_datapoint_value(stored.datapoint_id)) is type(value)


def test_get_datapoints_is_newest_first_by_data_timestamp(client: DataClient) -> None:
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = [client.submit_datapoint(ValueDataPoint(value=i, data_timestamp=base + timedelta(minutes=i))).datapoint_id
           for i in (3, 1, 2)]
    assert [d.value for d in client.get_datapoints(number=2)] == [3, 2]
    assert len(client.get_datapoints(number=0)) == 3
    assert set(ids) == {d.datapoint_id for d in client.get_datapoints(number=0)}


def test_query_datapoints_returns_dict_keyed_by_id(client: DataClient) -> None:
    hot = client.submit_datapoint(ValueDataPoint(label="a", value={"t": 30}))
    client.submit_datapoint(ValueDataPoint(label="b", value={"t": 10}))
    client.submit_datapoint(ValueDataPoint(label="c", value={"t": "warm"}))
    result = client.query_datapoints({"value.t": {"$gt": 20}})
    assert list(result) == [hot.datapoint_id]
    assert isinstance(result[hot.datapoint_id], ValueDataPoint)
    with pytest.raises(QueryError, match=r"\$where"):
        client.query_datapoints({"$where": "1 == 1"})


def test_names_map_to_the_same_ids_everywhere(client: DataClient) -> None:
    ownership = client.ownership(experiment="EXP42", user="alice")
    assert ownership.experiment_id == name_to_id("experiment", "EXP42")
    stored = client.submit_datapoint(ValueDataPoint(value=1, ownership_info=ownership))
    # The human name is kept beside the id, searchable.
    assert stored.custom_metadata["experiment_name"] == "EXP42"
    assert stored.custom_metadata["user_name"] == "alice"
    by_name = client.query_datapoints({"ownership_info.experiment_id": "exp42"})
    by_id = client.query_datapoints({"ownership_info.experiment_id": ownership.experiment_id})
    by_meta = client.query_datapoints({"custom_metadata.experiment_name": "EXP42"})
    assert list(by_name) == list(by_id) == list(by_meta) == [stored.datapoint_id]


def test_get_datapoints_by_ids_skips_unknown(client: DataClient) -> None:
    a = client.submit_datapoint(ValueDataPoint(value=1))
    b = client.submit_datapoint(ValueDataPoint(value=2))
    found = client.get_datapoints_by_ids([b.datapoint_id, "01JD3Q9V6X5J8Z0K2M4N6P8R0T", a.datapoint_id])
    assert list(found) == [b.datapoint_id, a.datapoint_id]


def test_submit_datapoints_is_one_transaction(client: DataClient, tmp_path: Path) -> None:
    good = [ValueDataPoint(value=i) for i in range(5)]
    stored = client.submit_datapoints(good)
    assert len(stored) == 5 and client.count_datapoints() == 5
    batch = [ValueDataPoint(value=1), FileDataPoint(path=str(tmp_path / "missing.bin")), ValueDataPoint(value=2)]
    with pytest.raises(Exception, match="missing.bin"):
        client.submit_datapoints(batch)
    assert client.count_datapoints() == 5  # nothing of the failed batch was stored


def test_resubmitting_identical_is_idempotent_but_conflicts_are_refused(client: DataClient) -> None:
    datapoint = ValueDataPoint(label="x", value={"a": 1})
    client.submit_datapoint(datapoint)
    client.submit_datapoint(datapoint)  # a retried submission
    assert client.count_datapoints() == 1
    changed = datapoint.model_copy(update={"value": {"a": 2}})
    with pytest.raises(ConflictError, match="value"):
        client.submit_datapoint(changed)
    assert client.get_datapoint_value(datapoint.datapoint_id) == {"a": 1}


def test_edit_bumps_revision_and_delete_leaves_a_tombstone(client: DataClient, run_txt: Path) -> None:
    stored = client.submit_datapoint(FileDataPoint(label="old", path=str(run_txt)))
    edited = client.update_datapoint(stored.datapoint_id, label="new", metadata={"sample": "S1"})
    assert edited.label == "new" and edited.custom_metadata["sample"] == "S1"
    record = client.service.get_stored(stored.datapoint_id)
    assert record.revision == 2 and record.sync_state == "pending"
    client.delete_datapoint(stored.datapoint_id)
    with pytest.raises(NotFoundError):
        client.get_datapoint(stored.datapoint_id)
    assert client.query_datapoints({}) == {}
    tombstone = client.service.store.get_stored(stored.datapoint_id, include_deleted=True)
    assert tombstone.deleted and tombstone.revision == 3 and tombstone.sync_state == "pending"
    # The file stays until sync has verified the deletion centrally.
    assert client.service.files.exists(stored.sha256)
    with pytest.raises(NotFoundError):
        client.delete_datapoint(stored.datapoint_id)
    with pytest.raises(ConflictError):
        client.submit_datapoint(stored)  # a deleted id is never reused


def test_unknown_ids_raise_not_found(client: DataClient) -> None:
    for call in (client.get_datapoint, client.get_datapoint_value):
        with pytest.raises(NotFoundError, match="01JD3Q9V6X5J8Z0K2M4N6P8R0T"):
            call("01JD3Q9V6X5J8Z0K2M4N6P8R0T")
    with pytest.raises(KeyError):  # NotFoundError is a KeyError, as dict users expect
        client.get_datapoint("nope")


def test_query_paging_with_cursor_and_count(client: DataClient) -> None:
    client.submit_datapoints([ValueDataPoint(label=f"p{i:02}", value=i) for i in range(25)])
    seen: list[str] = []
    cursor = None
    while True:
        page = client.query_page({}, sort="label", limit=10, cursor=cursor)
        seen.extend(d.label for d in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"p{i:02}" for i in range(25)]
    assert client.count_datapoints({"value": {"$gte": 20}}) == 5


def test_export_csv_and_parquet(client: DataClient, tmp_path: Path, run_txt: Path) -> None:
    client.submit_datapoint(ValueDataPoint(label="t", value={"t": 1.5}, ownership_info=OwnershipInfo(experiment_id=EXP)))
    client.submit_datapoint(FileDataPoint(label="f", path=str(run_txt)))
    assert client.export({}, tmp_path / "out.csv") == 2
    import csv

    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["label"] for r in rows} == {"t", "f"}
    value_row = next(r for r in rows if r["label"] == "t")
    assert json.loads(value_row["value"]) == {"t": 1.5} and value_row["experiment_id"] == EXP
    assert client.export({"data_type": "file"}, tmp_path / "out.parquet") == 1
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 1 and table.column("filename").to_pylist() == ["run.txt"]
    assert client.export({"label": "none"}, tmp_path / "empty.parquet") == 0
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_a_new_process_sees_everything(tmp_path: Path, run_txt: Path) -> None:
    store = tmp_path / "shared-store"
    with DataClient(data_dir=store) as client:
        value_id = client.submit_datapoint(ValueDataPoint(label="v", value=[1, 2])).datapoint_id
        file_id = client.submit_datapoint(FileDataPoint(label="f", path=str(run_txt))).datapoint_id
    code = (
        "import json, sys; from app import DataClient\n"
        f"c = DataClient(data_dir={str(store)!r})\n"
        f"print(json.dumps([c.get_datapoint_value({value_id!r}), c.get_datapoint_value({file_id!r}).decode()]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert json.loads(result.stdout) == [[1, 2], run_txt.read_text(encoding="utf-8")]


def test_pinned_names_work_in_capture_and_queries(client: DataClient) -> None:
    assigned_by_madsci = "01JD3Q9V6X5J8Z0K2M4N6P8R0T"
    client.service.names.pin("experiment", "Legacy-7", assigned_by_madsci)
    stored = client.submit_datapoint(ValueDataPoint(value=1, ownership_info=client.ownership(experiment="legacy-7")))
    assert stored.ownership_info.experiment_id == assigned_by_madsci
    assert stored.custom_metadata["experiment_name"] == "Legacy-7"
    assert list(client.query_datapoints({"ownership_info.experiment_id": "LEGACY-7"})) == [stored.datapoint_id]
    # Searching for a name never seen does not register it.
    assert client.query_datapoints({"ownership_info.experiment_id": "never-used"}) == {}
    assert [name for name, _ in client.service.names.names("experiment")] == ["Legacy-7"]
