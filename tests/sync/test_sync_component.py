"""The sync component of a running service follows the configuration file, and its
engine answers "sync now" asked by another process (the window attached to it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

from app.core.config import save_section
from app.runner import RunOptions
from app.service import BenchService
from sync.component import make_component
from sync.engine import SyncEngine, request_sync
from sync.settings import CentralSettings, save_settings


def test_sync_now_from_another_process_cuts_a_backoff_short(tmp_path: Path) -> None:
    settings = CentralSettings(preset="seaweedfs", endpoint="127.0.0.1:9", bucket="b",
                               access_key="a", secret_key="s",
                               mongo_url="mongodb://127.0.0.1:9")
    with BenchService(tmp_path / "store") as service, SyncEngine(service, settings) as engine:
        waiting = threading.Thread(
            target=engine._wait, kwargs={"failures": 10, "next_pull": time.monotonic() + 3600})
        waiting.start()
        # A backoff after ten failures lasts 30 s or more; the request ends it.
        with BenchService(tmp_path / "store") as other_process:
            request_sync(other_process)
        waiting.join(timeout=20)
        assert not waiting.is_alive()


def test_component_follows_the_central_settings(tmp_path: Path, central: Any) -> None:
    with BenchService(tmp_path / "store") as service:
        component = make_component(service, RunOptions())
        assert component is not None and component.engine is None  # not configured yet
        component.start()
        try:
            captured = service.capture_value({"n": 1}, label="before-settings")
            save_settings(service.paths, central)
            wait_until(lambda: component.engine is not None, timeout=30,
                       what="the engine to start with the saved settings")
            wait_until(lambda: service.get_stored(captured.datapoint_id).sync_state == "confirmed",
                       timeout=60, what="the capture to be confirmed central")
            engine = component.engine

            save_section(service.paths, "watch", {"rules": []})  # another section changes
            component.apply_settings_edits()  # what the follower calls on any edit
            assert component.engine is engine  # unchanged settings: the engine keeps going

            save_settings(service.paths, central.model_copy(update={"pull_interval_s": 7.0}))
            wait_until(lambda: component.engine is not engine, timeout=30,
                       what="the engine to restart with the edited settings")
            assert component.engine is not None
            assert component.engine.settings.pull_interval_s == 7.0
        finally:
            component.stop()
        assert component.engine is None
