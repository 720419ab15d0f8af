"""Moving a datapoint to another experiment reaches central and the other benches (on the
in-memory central store and on SeaweedFS + nx-27017: the ``sync_backend`` fixture)."""

from __future__ import annotations

from tests.sync.central_stores import CentralStore, sync_all

from app.service import BenchService
from sync.engine import SyncEngine


def test_a_moved_datapoint_is_pushed_with_the_new_id_and_name_and_pulled(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore) -> None:
    (a, _engine_a), (b, _engine_b) = benches
    captured = a.capture_value({"note": "cloudy buffer"}, label="run",
                               ownership=a.ownership(experiment="EXP42", user="alice"))
    sync_all(benches)
    assert b.count({"ownership_info.experiment_id": "EXP42"}) == 1

    a.update(captured.datapoint_id, ownership={"experiment": "EXP43"})
    sync_all(benches)
    exp43 = a.names.lookup("experiment", "EXP43")
    doc = sync_backend.written(captured.datapoint_id)
    assert doc["sync_revision"] == 2
    assert doc["ownership_info"] == {"user_id": captured.ownership_info.user_id,
                                     "experiment_id": exp43}
    assert doc["custom_metadata"] == {"experiment_name": "EXP43", "user_name": "alice"}

    # The other bench sees the move in queries and in full-text search (the pull is a
    # write like any other: the index follows it).
    assert b.count({"ownership_info.experiment_id": "EXP43"}) == 1
    assert b.count({"ownership_info.experiment_id": "EXP42"}) == 0
    assert [dp.datapoint_id for dp in b.search("EXP43").items] == [captured.datapoint_id]
    assert b.search("EXP42").items == []
    assert [dp.datapoint_id for dp in b.search("cloudy").items] == [captured.datapoint_id]
