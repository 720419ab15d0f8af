"""View → Fleet: benches behind, offline and needing attention, from real heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pydantic import SecretStr

from app.service import BenchService
from tests.ui.conftest import grab
from tests.support.servers import central_env
from sync.engine import SyncEngine
from sync.verify import Scrubber


@pytest.mark.allow_error_logs  # one bench has a wrong secret on purpose
def test_fleet_dialog_shows_benches_behind_and_offline(
        qtbot: Any, window: Any, tmp_path: Path, central: Any, run_txt: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in central_env(central).items():
        monkeypatch.setenv(key, value)
    broken = central.model_copy(update={"secret_key": SecretStr("wrong-secret")})
    ids = {}
    for name, settings in (("ok", central), ("behind", broken), ("gone", central)):
        with BenchService(tmp_path / name) as bench, SyncEngine(bench, settings) as engine:
            if name == "behind":
                bench.capture_file(run_txt, label="cannot go")
            if name == "ok":
                assert Scrubber(bench).run().ok
            engine.run_pass()
            ids[name] = engine.bench_id
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        benches = client[central.mongo_database]["benches"]
        benches.update_one({"_id": ids["gone"]}, {"$set": {
            "seen_at": datetime.now(timezone.utc) - timedelta(minutes=42)}})
        # Its change has waited an hour (as its next heartbeat would say): behind.
        benches.update_one({"_id": ids["behind"]}, {"$set": {"backlog_age_s": 3600.0}})
    finally:
        client.close()
    dialog = window.show_fleet()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 3, timeout=15000)
    assert dialog.state_of(ids["gone"]) == "offline"
    assert "42 min" in dialog.table.item(0, 5).text()
    assert dialog.state_of(ids["behind"]) == "behind, needs attention"
    assert dialog.state_of(ids["ok"]) == "ok"
    assert dialog.cell(ids["ok"], "Last scrub").startswith("ok, ")
    assert dialog.cell(ids["gone"], "Last scrub") == "never"
    assert dialog.table.item(0, 0).text() == ids["gone"]  # most urgent first
    assert "1 offline, 1 behind" in dialog.summary.text()
    grab(dialog, "fleet-dialog.png")
    dialog.close()
