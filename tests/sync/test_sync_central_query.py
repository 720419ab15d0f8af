"""Queries that go central: datapoints outside a bench's pull scope found in the central
store (CLI ``--central``, ``POST /datapoints/query?central=true``, DataClient), marked as
central, fetched on demand by id; one sentence when no central store answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.api.app import create_app
from app.api.server import ApiServer
from app.cli import cli
from app.client import DataClient
from app.core.errors import CentralNotConfiguredError, CentralUnavailableError, QueryError
from app.service import BenchService
from tests.support.servers import central_env
from sync.centralquery import TEXT_FIELDS, central_filter
from sync.engine import SyncEngine


@pytest.mark.parametrize("selector, expected", [
    ({}, {}),
    ({"label": "t"}, {"label": "t"}),
    ({"datapoint_id": "01m97cfb174z4rtceae5g1rk0f"}, {"_id": "01M97CFB174Z4RTCEAE5G1RK0F"}),
    ({"value.t": {"$gt": 20}}, {"value.t": {"$gt": 20}}),
    ({"data_type": "file"}, {"data_type": {"$in": ["file", "object_storage"]}}),
    ({"label": {"$in": ["a", "b"]}}, {"label": {"$in": ["a", "b"]}}),
    ({"label": {"$regex": "^ru", "$options": "i"}}, {"label": {"$regex": "^ru", "$options": "i"}}),
    ({"$or": [{"label": "a"}, {"size_bytes": {"$lte": 5}}]},
     {"$or": [{"label": "a"}, {"size_bytes": {"$lte": 5}}]}),
    ({"custom_metadata.run": {"$exists": True}}, {"custom_metadata.run": {"$exists": True}}),
    ({"data_timestamp": {"$gte": "2026-01-01T00:00:00Z"}},
     {"$or": [{"data_timestamp_utc": {"$gte": "2026-01-01T00:00:00.000000Z"}},
              {"data_timestamp_utc": {"$exists": False},
               "data_timestamp": {"$gte": "2026-01-01T00:00:00.000000Z"}}]}),
])
def test_selectors_translate_to_central_filters(selector: dict[str, Any],
                                                expected: dict[str, Any]) -> None:
    assert central_filter(selector) == expected


def test_names_words_and_refusals_in_central_filters() -> None:
    from app.core.ids import id_for

    named = central_filter({"ownership_info.experiment_id": "EXP2"})
    assert named == {"ownership_info.experiment_id": id_for("experiment", "EXP2")}
    words = central_filter({"label": "x"}, "far run")
    assert words["$and"][0] == {"label": "x"} and len(words["$and"]) == 3
    assert {"label": {"$regex": "far", "$options": "i"}} in words["$and"][1]["$or"]
    assert len(words["$and"][1]["$or"]) == len(TEXT_FIELDS)
    with pytest.raises(QueryError, match="this bench's own"):
        central_filter({"sync_state": "synced"})
    with pytest.raises(QueryError):
        central_filter({"$where": "1"})


def test_central_query_finds_out_of_scope_datapoints_and_get_keeps_one(
        tmp_path: Path, central: Any, run_txt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = central_env(central)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the service's own reader of the central store
    with BenchService(tmp_path / "a") as a, SyncEngine(a, central) as engine_a:
        inside = [a.capture_value(i, label="in", ownership=a.ownership(experiment="EXP1"))
                  for i in range(3)]
        outside = [a.capture_value(i, label=f"out-{i}",
                                   ownership=a.ownership(experiment="EXP2")) for i in range(5)]
        far = a.capture_file(run_txt, label="far spectrum",
                             ownership=a.ownership(experiment="EXP3"))
        assert engine_a.run_pass(force=True).ok
    scoped = central.model_copy(update={"pull_scope": {"experiment": ["EXP1"]}})
    with BenchService(tmp_path / "b") as b:
        with SyncEngine(b, scoped) as engine_b:
            assert engine_b.run_pass(force=True).pulled == len(inside)
        assert b.count({"ownership_info.experiment_id": "EXP2"}) == 0  # not in its scope

        found = b.query_central({"ownership_info.experiment_id": "EXP2",
                                 "value": {"$gte": 2}})
        assert [d.datapoint_id for d in found] == [d.datapoint_id for d in outside[2:]][::-1]
        assert b.count({}) == len(inside)  # a central query stores nothing
        files = b.query_central({"data_type": "file"})
        assert [d.datapoint_id for d in files] == [far.datapoint_id]
        assert [d.datapoint_id for d in b.query_central(None, text="SPECTRUM")] == \
            [far.datapoint_id]
        assert len(b.query_central({}, limit=4)) == 4
        keyed = DataClient(service=b).query_datapoints({"label": "out-1"}, central=True)
        assert list(keyed) == [outside[1].datapoint_id]

    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "b")]
    listed = runner.invoke(cli, [*base, "query", "--central", "--json",
                                 '{"ownership_info.experiment_id": "EXP2"}'], env=env,
                           catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)["items"]
    assert {i["_id"] for i in items} == {d.datapoint_id for d in outside}
    assert {i["location"] for i in items} == {"central"}
    table = runner.invoke(cli, [*base, "search", "--central", "far"], env=env)
    assert table.exit_code == 0 and "central" in table.output and far.datapoint_id in \
        table.output, table.output
    # Fetched on demand by id, then held here.
    got = runner.invoke(cli, [*base, "get", outside[0].datapoint_id, "--json"], env=env)
    assert got.exit_code == 0 and json.loads(got.output)["value"] == 0, got.output
    again = runner.invoke(cli, [*base, "query", "--central", "--json", '{"label": "out-0"}'],
                          env=env)
    assert [i["location"] for i in json.loads(again.output)["items"]] == ["here"]
    refused = runner.invoke(cli, [*base, "query", "--central", "--sort", "label", "{}"], env=env)
    assert refused.exit_code != 0 and "--sort cannot go with --central" in refused.output

    with BenchService(tmp_path / "b") as b, \
            ApiServer(app=create_app(b, fast_ingest=False), port=0) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        reply = http.post("/datapoints/query?central=true",
                          json={"ownership_info.experiment_id": "EXP2"})
        assert reply.status_code == 200, reply.text
        assert {i: d["location"] for i, d in reply.json().items()} == {
            d.datapoint_id: "here" if d is outside[0] else "central" for d in outside}
        local = http.post("/datapoints/query", json={"ownership_info.experiment_id": "EXP2"})
        assert list(local.json()) == [outside[0].datapoint_id]  # without it: this bench only
        bad = http.post("/datapoints/query?central=true", json={"sync_state": "synced"})
        assert bad.status_code == 400 and "bench's own" in bad.json()["detail"]
        paged = http.post("/datapoints/query?central=true&cursor=x", json={})
        assert paged.status_code == 422


def test_central_query_without_a_central_store_says_so(tmp_path: Path) -> None:
    with BenchService(tmp_path / "b") as b:
        b.capture_value(1, label="here")
        with pytest.raises(CentralNotConfiguredError, match="no central store is configured"):
            b.query_central({})
        with ApiServer(app=create_app(b, fast_ingest=False), port=0) as server, \
                httpx.Client(base_url=server.url, timeout=30) as http:
            reply = http.post("/datapoints/query?central=true", json={})
    assert reply.status_code == 409 and "benchdata sync configure" in reply.json()["detail"]
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "b"), "search", "here",
                                      "--central"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no central store is configured"), result.output


def test_central_query_with_the_central_store_down_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.servers import free_port

    monkeypatch.setenv("BENCHDATA_MONGO_URL", f"mongodb://127.0.0.1:{free_port()}/")
    with BenchService(tmp_path / "b") as b:
        with pytest.raises(CentralUnavailableError, match="cannot be searched now"):
            b.query_central({"label": "x"})
        with ApiServer(app=create_app(b, fast_ingest=False), port=0) as server, \
                httpx.Client(base_url=server.url, timeout=60) as http:
            reply = http.post("/datapoints/query?central=true", json={"label": "x"})
    assert reply.status_code == 424, reply.text
    assert "try again later" in reply.json()["detail"]
