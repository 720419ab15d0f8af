"""Settings the facility provisioned and locked are shown but cannot be changed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conftest import grab


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
