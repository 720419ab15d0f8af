"""The window's recovery views: interrupted captures (and recently deleted datapoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app.core import capture_notes
from app.core.models import FileDataPoint
from app.service import BenchService
from tests.ui.conftest import grab, wait_idle


def _left_by_a_crash(service: BenchService, note_id: str, source: Path, front_end: str,
                     datapoint: dict[str, Any] | None) -> None:
    """A note as a killed capture leaves it (tests/test_interrupted_captures.py kills a
    real process; here the window's part is tested)."""
    service.capture_notes.dir.mkdir(parents=True, exist_ok=True)
    (service.capture_notes.dir / f"{note_id}.json").write_text(json.dumps(
        {"source": str(source), "size_bytes": 2048, "started_at": "2026-12-07T04:00:00Z",
         "front_end": front_end, "datapoint": datapoint}))


@pytest.fixture
def crashed(service: BenchService, tmp_path: Path) -> FileDataPoint:
    source = tmp_path / "spectrum-7.csv"
    source.write_bytes(b"x" * 2048)
    meant = FileDataPoint(path=str(source), label="spectrum 7")
    _left_by_a_crash(service, "aa01", source, capture_notes.WINDOW,
                     meant.model_dump(mode="json"))
    _left_by_a_crash(service, "bb02", tmp_path / "watched" / "run.raw",
                     capture_notes.WATCHED_FOLDER, None)
    return meant


def test_the_window_lists_interrupted_captures_and_captures_one_again(
        qtbot: Any, crashed: FileDataPoint, window: Any) -> None:
    banner = window.interrupted_banner
    qtbot.waitUntil(banner.isVisible)
    assert banner.label.text().startswith("2 capture(s) were interrupted")
    grab(window, "interrupted-banner.png")
    qtbot.mouseClick(banner.show_button, Qt.MouseButton.LeftButton)
    dialog = banner.dialog
    assert dialog.isVisible() and not dialog.isModal()
    assert [dialog.table.item(r, 0).text() for r in range(2)] == [
        crashed.path, str(Path(crashed.path).parent / "watched" / "run.raw")]
    assert dialog.table.item(0, 1).text() == "2.0 KiB"
    assert "watcher captures it again" in dialog.table.item(1, 4).text()
    grab(dialog, "interrupted-captures.png")

    dialog.table.selectRow(1)
    assert not dialog.retry_button.isEnabled()  # the watcher does it
    dialog.table.selectRow(0)
    with qtbot.waitSignal(dialog.captured, timeout=10_000) as captured:
        qtbot.mouseClick(dialog.retry_button, Qt.MouseButton.LeftButton)
    assert captured.args == [crashed.datapoint_id]
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1)
    wait_idle(qtbot, window)
    assert window.model.rowCount() == 1

    dialog.table.selectRow(0)
    qtbot.mouseClick(dialog.dismiss_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 0)
    qtbot.waitUntil(lambda: not banner.isVisible())
    assert window.context.service.interrupted_captures() == []


def test_ctrl_z_right_after_a_delete_restores_it(qtbot: Any, window: Any,
                                                 service: BenchService) -> None:
    kept = service.capture_value({"t": 1}, label="kept")
    doomed = service.capture_value({"t": 2}, label="doomed by mistake")
    window.refresh()
    wait_idle(qtbot, window)
    assert not window.undo_delete_action.isEnabled()
    window.delete_ids([doomed.datapoint_id], confirmed=True)
    qtbot.waitUntil(lambda: window.undo_delete_action.isEnabled())
    wait_idle(qtbot, window)
    assert window.model.rowCount() == 1
    grab(window, "undo-delete.png")
    window.table.setFocus()
    qtbot.keyClick(window.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.model.rowCount() == 2)
    assert service.get(doomed.datapoint_id).label == "doomed by mistake"
    assert service.get_stored(doomed.datapoint_id).revision == 3  # a new revision
    assert not window.undo_delete_action.isEnabled()
    assert service.get(kept.datapoint_id).label == "kept"


def test_recently_deleted_lists_when_and_by_whom_and_restores(
        qtbot: Any, window: Any, service: BenchService) -> None:
    first = service.capture_value({"t": 1}, label="absorbance run 3")
    second = service.capture_value({"t": 2}, label="blank")
    service.delete(first.datapoint_id, by="alice on UV-Vis 2")
    service.delete(second.datapoint_id, by="bob")
    window.refresh()
    wait_idle(qtbot, window)
    assert window.model.rowCount() == 0
    view = window.show_recently_deleted()
    qtbot.waitUntil(lambda: view.table.rowCount() == 2)
    assert not view.isModal()
    rows = {view.table.item(r, 0).text(): view.table.item(r, 3).text() for r in range(2)}
    assert rows == {"absorbance run 3": "alice on UV-Vis 2", "blank": "bob"}
    assert "30 days" in view.intro.text()
    view.table.selectRow([view.table.item(r, 0).text() for r in range(2)].index(
        "absorbance run 3"))
    grab(view, "recently-deleted.png")
    with qtbot.waitSignal(view.restored, timeout=10_000) as restored:
        qtbot.mouseClick(view.restore_button, Qt.MouseButton.LeftButton)
    assert restored.args == [[first.datapoint_id]]
    qtbot.waitUntil(lambda: view.table.rowCount() == 1)
    qtbot.waitUntil(lambda: window.model.rowCount() == 1)
    view.close()


def test_a_delete_in_the_window_is_announced_and_an_open_recently_deleted_lists_it(
        qtbot: Any, window: Any, service: BenchService) -> None:
    """The window's operations say what they changed on one signal
    (``context.operations.did_execute``); every view redraws from it, so the open
    Recently deleted dialog shows a datapoint deleted in the table."""
    kept = service.capture_value({"t": 1}, label="kept")
    gone = service.capture_value({"t": 2}, label="deleted here")
    window.refresh()
    qtbot.waitUntil(lambda: window.model.rowCount() == 2)
    view = window.show_recently_deleted()
    wait_idle(qtbot, window)
    assert view.table.rowCount() == 0
    with qtbot.waitSignal(window.context.operations.did_execute, timeout=10_000) as done:
        window.delete_ids([gone.datapoint_id], confirmed=True)
    changes, initiator = done.args
    assert changes.removed == (gone.datapoint_id,) and changes.rows and initiator is window
    qtbot.waitUntil(lambda: view.table.rowCount() == 1)
    assert view.table.item(0, 0).text() == "deleted here"
    qtbot.waitUntil(lambda: window.model.rowCount() == 1)
    assert window.model.id_at(0) == kept.datapoint_id
    with qtbot.waitSignal(window.context.operations.did_execute, timeout=10_000) as undone:
        window.undo_delete()
    assert undone.args[0].written == (gone.datapoint_id,)
    qtbot.waitUntil(lambda: view.table.rowCount() == 0)
    qtbot.waitUntil(lambda: window.model.rowCount() == 2)
    view.close()
