"""Names edited as ownership, read back the same way everywhere, and full-text search."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.client import DataClient
from app.core.errors import QueryError, ValidationError
from app.core.ids import new_ulid
from app.core.models import ValueDataPoint
from app.core.search import match_expression
from app.service import BenchService
from sync.localrows import apply_remote


@pytest.fixture
def service(tmp_path: Path) -> BenchService:
    with BenchService(tmp_path / "store") as bench:
        yield bench


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# -- names as ownership ------------------------------------------------------------------


def test_update_moves_a_datapoint_to_another_experiment(service: BenchService,
                                                        tmp_path: Path) -> None:
    captured = service.capture_value(1, label="run", metadata={"sample": "S1"},
                                     ownership=service.ownership(experiment="EXP42", user="alice"))
    moved = service.update(captured.datapoint_id, ownership={"experiment": "EXP43"})
    exp43 = service.names.lookup("experiment", "EXP43")
    assert moved.ownership_info.experiment_id == exp43
    assert moved.ownership_info.user_id == captured.ownership_info.user_id
    assert moved.custom_metadata == {"sample": "S1", "experiment_name": "EXP43",
                                     "user_name": "alice"}
    stored = service.get_stored(captured.datapoint_id)
    assert stored.revision == 2 and stored.sync_state == "pending"
    assert service.count({"ownership_info.experiment_id": "EXP43"}) == 1
    assert service.count({"ownership_info.experiment_id": "EXP42"}) == 0

    # A ULID without a known name drops the stale name; "" clears the field.
    other = new_ulid()
    moved = service.update(captured.datapoint_id, ownership={"experiment_id": other, "user": ""})
    assert moved.ownership_info.experiment_id == other and moved.ownership_info.user_id is None
    assert moved.custom_metadata == {"sample": "S1"}


@pytest.mark.parametrize("edit", [{"set_metadata": {"experiment_name": "EXP43"}},
                                  {"remove_metadata": ["user_name"]}])
def test_name_keys_cannot_be_edited_as_metadata(service: BenchService, edit: dict) -> None:
    captured = service.capture_value(1, ownership=service.ownership(experiment="EXP42",
                                                                    user="alice"))
    with pytest.raises(ValidationError, match=r"--(experiment|user) NAME"):
        service.update(captured.datapoint_id, **edit)
    assert service.get_stored(captured.datapoint_id).revision == 1


def test_capture_refuses_a_name_key_that_names_another_id(service: BenchService) -> None:
    exp42 = service.ownership(experiment="EXP42")
    with pytest.raises(ValidationError, match="experiment_name"):
        service.submit(ValueDataPoint(value=1, ownership_info=exp42,
                                      custom_metadata={"experiment_name": "EXP43"}))
    with pytest.raises(ValidationError, match="experiment_name"):
        service.submit(ValueDataPoint(value=1, custom_metadata={"experiment_name": "EXP43"}))
    # The name the bench itself gives back is accepted (a document re-submitted as it was).
    ok = service.submit(ValueDataPoint(value=1, ownership_info=exp42,
                                       custom_metadata={"experiment_name": "exp42"}))
    assert ok.custom_metadata == {"experiment_name": "exp42"}
    assert service.count() == 1


def test_cli_edit_moves_and_refuses_name_metadata() -> None:
    code, out, _ = invoke("add", "value", "1", "--experiment", "EXP42", "--json")
    datapoint_id = json.loads(out)["_id"]
    code, out, _ = invoke("edit", datapoint_id, "--experiment", "EXP43", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["custom_metadata"] == {"experiment_name": "EXP43"}
    code, out, _ = invoke("query", '{"ownership_info.experiment_id": "EXP43"}', "--count")
    assert out.strip() == "1"
    code, out, err = invoke("edit", datapoint_id, "--meta", "experiment_name=EXP44")
    assert code == 1 and "--experiment NAME" in err


def test_client_update_datapoint_takes_ownership(client: DataClient) -> None:
    captured = client.submit_datapoint(ValueDataPoint(value=1, ownership_info=client.ownership(
        experiment="EXP42")))
    moved = client.update_datapoint(captured.datapoint_id, ownership={"experiment": "EXP43"})
    assert moved.custom_metadata["experiment_name"] == "EXP43"
    assert list(client.query_datapoints({"ownership_info.experiment_id": "EXP43"})) == [
        captured.datapoint_id]


def test_export_shows_names_beside_ids_pins_included(service: BenchService,
                                                     tmp_path: Path) -> None:
    pinned = new_ulid()
    service.names.pin("experiment", "EXP42", pinned)
    # A row pulled from central with the pinned id and no name beside it.
    pulled = ValueDataPoint(value=1, label="pulled",
                            ownership_info=service.ownership(experiment=pinned))
    apply_remote(service.store, [(pulled, 1)])
    captured = service.capture_value(2, label="moved",
                                     ownership=service.ownership(experiment="EXP1"))
    service.update(captured.datapoint_id, ownership={"experiment": "EXP43"})
    code, out, _ = invoke("--data-dir", str(tmp_path / "store"), "export", "{}", "-o",
                          str(tmp_path / "all.csv"))
    assert code == 0, out
    with (tmp_path / "all.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["label"]: row for row in csv.DictReader(handle)}
    header = list(rows["pulled"])
    assert header.index("experiment_name") == header.index("experiment_id") + 1
    assert (rows["pulled"]["experiment_id"], rows["pulled"]["experiment_name"]) == (pinned, "EXP42")
    assert rows["moved"]["experiment_name"] == "EXP43"
    code, out, _ = invoke("--data-dir", str(tmp_path / "store"), "get", pulled.datapoint_id)
    assert f"{pinned}  (EXP42)" in out
    assert rows["moved"]["experiment_id"] == service.names.lookup("experiment", "EXP43")


# -- full-text search --------------------------------------------------------------------


def _labels(page: object) -> list[str]:
    return [dp.label for dp in page.items]  # type: ignore[attr-defined]


def test_search_finds_labels_files_names_metadata_and_nested_strings(
        service: BenchService, run_txt: Path) -> None:
    service.capture_value({"note": "cloudy buffer", "runs": [{"operator": "Zoë"}]},
                          label="absorbance")
    service.capture_value(3, label="second", metadata={"sample": "S1", "rig": "north"})
    service.capture_value(4, label="third", ownership=service.ownership(experiment="EXP42"))
    service.capture_file(run_txt, label="log")
    assert _labels(service.search("S1")) == ["second"]
    assert _labels(service.search("cloudy")) == ["absorbance"]
    assert _labels(service.search("zoe")) == ["absorbance"]          # accents ignored
    assert _labels(service.search("operator")) == ["absorbance"]     # keys inside values
    assert _labels(service.search("rig")) == ["second"]              # metadata keys
    assert _labels(service.search("exp42")) == ["third"]             # names
    assert _labels(service.search("run.txt")) == ["log"]             # file names
    assert _labels(service.search("absorb")) == ["absorbance"]       # last term a prefix
    service.capture_value(5, label="S12")
    assert _labels(service.search("S1")) == ["second"]               # short: not a prefix
    assert _labels(service.search("cloudy S1")) == []                # every term must occur
    assert service.count(text="S1") == 1
    # Combined with a selector; $text works inside the query language's selectors too.
    assert _labels(service.search("S1", {"label": "third"})) == []
    assert service.count({"$text": {"$search": "cloudy"}, "data_type": "json"}) == 1


@pytest.mark.parametrize("text", ['"', 'AND', 'NEAR(a b', 'a:b', '*', 'x"y', '-S1', '^',
                                  'label:x OR', '\x00', "((", 'NOT'])
def test_search_text_is_never_fts5_syntax(service: BenchService, text: str) -> None:
    service.capture_value(1, label='x"y a:b -S1 NOT')
    service.search(text)  # never an error: every term is a quoted phrase
    service.count(text=text)


def test_match_expression_quotes_terms_and_prefixes_the_last() -> None:
    assert match_expression('cloudy "buf') == '"cloudy" """buf"*'
    assert match_expression("  ") is None and match_expression("- ( )") is None
    # A short last word is not a prefix: "7" would expand to every number starting with 7.
    assert match_expression("label-7") == '"label-7"'
    assert match_expression("S1") == '"S1"' and match_expression("abc") == '"abc"*'

    with pytest.raises(QueryError):
        match_expression("x" * 1001)


def test_the_index_follows_updates_tombstones_and_pulls(service: BenchService) -> None:
    captured = service.capture_value(1, label="alpha")
    service.update(captured.datapoint_id, label="beta", set_metadata={"sample": "S9"})
    assert _labels(service.search("alpha")) == [] and _labels(service.search("S9")) == ["beta"]
    service.delete(captured.datapoint_id)
    assert service.search("beta").items == []
    pulled = ValueDataPoint(value={"deep": ["gamma"]}, label="remote")
    apply_remote(service.store, [(pulled, 1)])
    assert _labels(service.search("gamma")) == ["remote"]
    newer = pulled.model_copy(update={"value": {"deep": ["delta"]}})
    apply_remote(service.store, [(newer, 2)])
    assert service.search("gamma").items == [] and _labels(service.search("delta")) == ["remote"]
    with service.store.reader() as conn:
        entries = conn.execute("SELECT COUNT(*) FROM datapoint_search").fetchone()[0]
    assert entries == 1  # the tombstone left the index


def test_the_migration_indexes_rows_stored_before_it(tmp_path: Path) -> None:
    with BenchService(tmp_path / "old") as bench:
        bench.capture_value({"note": "cloudy"}, label="old")
        db = bench.paths.database
    # Back to a store written before the search component existed.
    conn = sqlite3.connect(db, isolation_level=None)
    for trigger in ("update", "delete"):
        conn.execute(f"DROP TRIGGER datapoint_search_{trigger}")
    for table in ("", "_pending", "_state"):
        conn.execute(f"DROP TABLE datapoint_search{table}")
    conn.execute("DELETE FROM component_versions WHERE component = 'search'")
    conn.close()
    with BenchService(tmp_path / "old") as bench:
        assert _labels(bench.search("cloudy")) == ["old"]


def test_an_index_without_column_sizes_replaces_the_first_one(tmp_path: Path) -> None:
    with BenchService(tmp_path / "v1") as bench:
        bench.capture_value({"note": "cloudy"}, label="old")
        db = bench.paths.database
    # Back to the first version of the index (per-row sizes kept, version 1).
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TABLE datapoint_search")
    conn.execute("CREATE VIRTUAL TABLE datapoint_search USING fts5("
                 "body, tokenize = 'unicode61 remove_diacritics 2')")
    conn.execute("UPDATE component_versions SET version = 1 WHERE component = 'search'")
    conn.close()
    with BenchService(tmp_path / "v1") as bench:
        assert _labels(bench.search("cloudy")) == ["old"]
        with bench.store.reader() as conn:
            sql = conn.execute("SELECT sql FROM sqlite_master "
                               "WHERE name = 'datapoint_search'").fetchone()[0]
    assert "columnsize = 0" in sql


def test_escaped_control_characters_separate_words(service: BenchService) -> None:
    service.capture_value({"note": "first line\nsecond\tthird"}, label="lines",
                          metadata={"memo": "a\rfourth"})
    service.capture_value({"path": "C:\\data\\fifth"}, label="backslash")
    for word in ("line", "second", "third", "fourth"):
        assert _labels(service.search(word)) == ["lines"], word
    assert _labels(service.search("fifth")) == ["backslash"]


def test_rows_written_around_the_store_are_found_too(service: BenchService) -> None:
    first = service.capture_value(1, label="first")
    service.capture_value(2, label="last")
    db = service.paths.database
    # Another program writes straight into the database: an edit, a physical delete of
    # the last row (its rowid is handed out again) and a new row.
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE datapoints SET label = 'renamed' WHERE id = ?", (first.datapoint_id,))
    conn.execute("DELETE FROM datapoints WHERE label = 'last'")
    conn.close()
    newest = service.capture_value({"note": "cloudy"}, label="newest")
    assert _labels(service.search("renamed")) == ["renamed"]
    assert service.search("first").items == [] and service.search("last").items == []
    assert [dp.datapoint_id for dp in service.search("cloudy newest").items] == [
        newest.datapoint_id]
    conn = sqlite3.connect(db, isolation_level=None)
    row = ValueDataPoint(value="sunny", label="outside")
    from app.core.rows import ALL_COLUMNS, INSERT_SQL, datapoint_to_row
    values = datapoint_to_row(row)
    conn.execute(INSERT_SQL, [values[c] for c in ALL_COLUMNS])
    conn.close()
    assert _labels(service.search("sunny")) == ["outside"]  # indexed before the search


def test_a_name_pinned_later_finds_rows_madsci_wrote(service: BenchService) -> None:
    madsci_id = new_ulid()
    apply_remote(service.store, [(ValueDataPoint(
        value=1, label="from madsci", ownership_info=service.ownership(experiment=madsci_id)), 1)])
    assert service.search("EXP77").items == []
    service.names.pin("experiment", "EXP77", madsci_id)
    assert _labels(service.search("EXP77")) == ["from madsci"]


def test_cli_search_json_count_and_bad_input(tmp_path: Path) -> None:
    invoke("add", "value", '{"note": "cloudy buffer"}', "--label", "a", "--meta", "sample=S1")
    invoke("add", "value", "2", "--label", "b")
    code, out, _ = invoke("search", "cloudy", "--json")
    assert code == 0 and [d["label"] for d in json.loads(out)["items"]] == ["a"]
    code, out, _ = invoke("search", "S1", "--count")
    assert out.strip() == "1"
    code, out, _ = invoke("search", "S1", "--count", "--json")
    assert json.loads(out) == {"count": 1}
    code, out, _ = invoke("search", "S1", "--where", '{"label": "b"}')
    assert code == 0 and "No datapoints." in out
    code, out, _ = invoke("search", 'NEAR("x', "--count")
    assert code == 0 and out.strip() == "0"
    code, _out, err = invoke("search", "   ")
    assert code == 2 and "search for" in err


def test_client_search(client: DataClient) -> None:
    found = client.submit_datapoint(ValueDataPoint(value={"a": {"b": "cloudy"}}, label="x"))
    client.submit_datapoint(ValueDataPoint(value=1, label="y"))
    assert list(client.search("cloudy")) == [found.datapoint_id]
    assert client.search("cloudy", {"label": "y"}) == {}


def _entries(service: BenchService) -> int:
    with service.store.reader() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM datapoint_search").fetchone()[0])


def test_new_rows_are_indexed_in_batches_and_always_before_a_search(
        service: BenchService) -> None:
    from app.core.search import BATCH_ROWS

    service.capture_value({"note": "lonely"}, label="one")
    assert _entries(service) == 0  # waits for a batch ...
    assert _labels(service.search("lonely")) == ["one"]  # ... but never for a search
    assert _entries(service) == 1
    service.submit_many([ValueDataPoint(value=i, label="many") for i in range(BATCH_ROWS)])
    assert _entries(service) == 1 + BATCH_ROWS  # a full batch is indexed as it commits
    assert service.count(text="many") == BATCH_ROWS
