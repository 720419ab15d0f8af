"""Settings the facility provisioned and locked are shown but cannot be changed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.ui.conftest import grab


def provision(site: dict[str, Any]) -> Path:
    path = Path(os.environ["BENCHDATA_SITE_CONFIG"])
    path.write_text(json.dumps(site), encoding="utf-8")
    return path


def test_locked_watched_folders_are_read_only(qtbot: Any, window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "instrument"
    folder.mkdir()
    site = provision({"watch": {"version": 1, "rules": [
        {"id": "r1", "name": "HPLC", "path": str(folder), "include": ["*.csv"]}]},
        "locked": ["watch"]})
    window.toggle_watch_panel()
    panel = window.watch_panel
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.locked_by is not None)
    assert panel.table.item(0, 0).text() == "HPLC"
    assert f"set by the facility ({site})" in panel.message.text()
    panel.table.selectRow(0)
    assert not panel.add_button.isEnabled()
    assert not panel.edit_button.isEnabled() and not panel.remove_button.isEnabled()
    assert panel.edit_selected() is None
    grab(window, "watch-panel-locked.png")


def test_settings_dialog_greys_out_locked_central_settings_and_saves_the_rest(
        qtbot: Any, window: Any) -> None:
    from sync.settings import load_settings

    site = provision({"central": {"preset": "seaweedfs", "endpoint": "s3.lab.example:8333",
                                  "bucket": "lab-data", "part_size": 32 * 1024 * 1024},
                      "locked": ["central.endpoint", "central.bucket"]})
    dialog = window.open_settings()
    dialog.tabs.setCurrentIndex(1)
    assert dialog.endpoint.text() == "s3.lab.example:8333" and not dialog.endpoint.isEnabled()
    assert dialog.bucket.text() == "lab-data" and not dialog.bucket.isEnabled()
    assert str(site) in dialog.bucket.toolTip()
    assert dialog.locked_note.isVisible() and str(site) in dialog.locked_note.text()
    assert dialog.mongo_database.isEnabled()
    dialog.preset.setCurrentIndex(dialog.preset.findData("aws"))  # must not touch the endpoint
    assert dialog.endpoint.text() == "s3.lab.example:8333"
    dialog.preset.setCurrentIndex(dialog.preset.findData("seaweedfs"))
    dialog.mongo_database.setText("lab_records")
    dialog.access_key.setText("bench-7")
    grab(dialog, "settings-dialog-locked.png")
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()
    saved = load_settings(window.context.service.paths, environ={})
    assert saved.mongo_database == "lab_records" and saved.access_key == "bench-7"
    assert saved.endpoint == "s3.lab.example:8333" and saved.bucket == "lab-data"
    # A setting the dialog does not show (from the facility's file) survives the save.
    assert saved.part_size == 32 * 1024 * 1024
