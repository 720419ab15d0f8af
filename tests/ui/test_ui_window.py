"""The desktop window, through its real widgets, over a real local store (offscreen)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.ui.conftest import grab, wait_idle
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from app.core.models import FileDataPoint, ValueDataPoint
from app.service import BenchService
from app.ui.filters import FilterState, build_selector
from app.ui.table_model import LABEL, SYNC, DatapointTableModel
from app.ui.rowsource import RowSource
from app.ui.tasks import TaskManager

NOW = datetime.now(timezone.utc)


def labels_shown(win: Any) -> list[str]:
    model = win.model
    return [model.index(row, LABEL).data() for row in range(model.rowCount())]


def wait_rows(qtbot: Any, win: Any) -> None:
    """Until every row of the table has its contents (small tables in these tests)."""
    wait_idle(qtbot, win)
    model = win.model
    for row in range(model.rowCount()):
        model.index(row, LABEL).data()
    qtbot.waitUntil(lambda: all(model.summary(r) is not None for r in range(model.rowCount())),
                    timeout=10_000)


def populate(service: BenchService) -> None:
    """Values and files across two experiments, three ages and two sync states."""
    alpha = service.ownership(experiment="EXP-ALPHA", user="alice")
    beta = service.ownership(experiment="EXP-BETA", user="bob")
    items = []
    for i in range(6):
        items.append(ValueDataPoint(label=f"temperature-{i}", value={"t": 20 + i, "note": "ok"},
                                    ownership_info=alpha,
                                    data_timestamp=NOW - timedelta(hours=i)))
    for i in range(4):
        items.append(ValueDataPoint(label=f"pressure-{i}", value="vacuum pump",
                                    ownership_info=beta,
                                    data_timestamp=NOW - timedelta(days=40 + i)))
    service.submit_many(items)
    service.store.submit = None  # type: ignore[attr-defined]


def mark_synced(service: BenchService, label_prefix: str) -> None:
    # Stands in for the sync engine marking rows verified (the engine owns this column).
    with service.store.transaction() as conn:
        conn.execute("UPDATE datapoints SET sync_state = 'confirmed' WHERE label LIKE ?",
                     (label_prefix + "%",))


# -- the model ---------------------------------------------------------------------------------


def test_table_model_passes_qtmodeltester(qtbot: Any, qtmodeltester: Any,
                                          service: BenchService) -> None:
    service.submit_many([ValueDataPoint(label=f"row-{i}", value=i,
                                        data_timestamp=NOW - timedelta(seconds=i))
                         for i in range(450)])
    tasks = TaskManager()
    model = DatapointTableModel(RowSource(service.store), tasks)
    try:
        with qtbot.waitSignal(model.order_loaded, timeout=10_000):
            model.set_query(None)
        assert model.rowCount() == 450
        qtbot.waitUntil(lambda: model.index(0, LABEL).data() == "row-0")
        model.index(449, LABEL).data()  # a placeholder first, fetched lazily
        qtbot.waitUntil(lambda: model.index(449, LABEL).data() == "row-449", timeout=10_000)
        qtmodeltester.check(model, force_py=True)
        with qtbot.waitSignal(model.order_loaded, timeout=10_000):
            model.sort(LABEL, Qt.SortOrder.AscendingOrder)
        qtbot.waitUntil(lambda: model.index(0, LABEL).data() == "row-0")
        qtbot.waitUntil(lambda: model.index(1, LABEL).data() == "row-1")
        model.index(2, LABEL).data()
        qtbot.waitUntil(lambda: model.index(2, LABEL).data() == "row-10")
        qtmodeltester.check(model, force_py=True)
    finally:
        tasks.shutdown()


def test_model_shows_the_end_before_the_order_is_loaded(qtbot: Any, service: BenchService) -> None:
    service.submit_many([ValueDataPoint(label=f"row-{i}", value=i,
                                        data_timestamp=NOW - timedelta(seconds=i))
                         for i in range(1000)])
    tasks = TaskManager()
    model = DatapointTableModel(RowSource(service.store), tasks)
    try:
        with qtbot.waitSignal(model.count_known, timeout=10_000):
            model.set_query(None)
        model._order = None  # as if the full order were still loading  # noqa: SLF001
        model.index(999, LABEL).data()
        qtbot.waitUntil(lambda: model.index(999, LABEL).data() == "row-999", timeout=10_000)
        model.index(500, LABEL).data()
        qtbot.waitUntil(lambda: model.index(500, LABEL).data() == "row-500", timeout=10_000)
    finally:
        tasks.shutdown()


# -- browse, search, filters ----------------------------------------------------------------


def test_window_opens_on_an_empty_store_and_says_what_to_do(window: Any) -> None:
    assert window.model.rowCount() == 0
    assert window.empty_hint.isVisible()
    assert "Local only" in window.sync_indicator.text.text()


def test_newest_first_and_search_and_each_quick_filter(qtbot: Any, window: Any,
                                                       service: BenchService) -> None:
    populate(service)
    mark_synced(service, "pressure")
    window.refresh()
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 10
    assert labels_shown(window)[0] == "temperature-0"  # newest first
    assert "10 datapoints" in window.count_label.text()

    bar = window.filter_bar
    bar.search.setText("PRESSURE")  # labels, case-insensitive; debounced
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=5000)
    wait_rows(qtbot, window)
    assert all(label.startswith("pressure") for label in labels_shown(window))
    bar.search.setText("vacuum")  # a value
    qtbot.waitUntil(lambda: window.model.selector and "vacuum" in json.dumps(window.model.selector))
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 4
    bar.search.clear()
    bar.apply()
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 10

    bar.experiment.setEditText("exp-alpha")  # a name, any case
    bar.apply()
    wait_rows(qtbot, window)
    assert sorted(labels_shown(window)) == [f"temperature-{i}" for i in range(6)]
    bar.experiment.setEditText("")
    bar.date_combo.setCurrentIndex(2)  # last 7 days
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 6
    bar.date_combo.setCurrentIndex(4)  # custom range around the old ones
    old = (NOW - timedelta(days=41)).astimezone()
    bar.since.setDate(old.date() - timedelta(days=1))
    bar.until.setDate(old.date())
    wait_rows(qtbot, window)
    assert sorted(labels_shown(window)) == ["pressure-1", "pressure-2"]
    bar.date_combo.setCurrentIndex(0)
    bar.sync_combo.setCurrentIndex(bar.sync_combo.findData("confirmed"))
    wait_rows(qtbot, window)
    assert sorted(labels_shown(window)) == [f"pressure-{i}" for i in range(4)]
    assert window.model.index(0, SYNC).data() == "Synced"
    bar.sync_combo.setCurrentIndex(bar.sync_combo.findData("unsynced"))
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 6
    bar.sync_combo.setCurrentIndex(0)
    bar.type_combo.setCurrentIndex(bar.type_combo.findData("file"))
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 0
    assert not window.empty_hint.isVisible()  # filtered to nothing is not an empty store
    bar.type_combo.setCurrentIndex(bar.type_combo.findData("json"))
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 10


def test_advanced_query_filters_and_shows_errors_inline(qtbot: Any, window: Any,
                                                        service: BenchService) -> None:
    populate(service)
    window.refresh()
    wait_rows(qtbot, window)
    bar = window.filter_bar
    bar.advanced_toggle.setChecked(True)
    bar.advanced.setText('{"value.t": {"$gte": 23}}')
    bar.apply()
    wait_rows(qtbot, window)
    assert sorted(labels_shown(window)) == ["temperature-3", "temperature-4", "temperature-5"]
    bar.advanced.setText('{"value.t": {"$near": 3}}')
    assert bar.advanced_error.isVisible()
    assert "$near" in bar.advanced_error.text()
    bar.advanced.setText('{"value.t": ')
    assert "not valid JSON" in bar.advanced_error.text()
    bar.apply()  # refused: the table keeps its last good query
    assert window.model.rowCount() == 3


def test_filters_build_selectors_the_query_language_accepts() -> None:
    from app.core.query import parse_selector
    from app.core.search import split_text

    assert build_selector(FilterState()) is None
    for state in (FilterState(text="a.b*"), FilterState(data_type="file"),
                  FilterState(experiment="EXP1"), FilterState(sync_state="unsynced"),
                  FilterState(since=NOW.date(), until=NOW.date(), advanced='{"label": "x"}')):
        # The search box's $text goes to the full-text engine, the rest to the query language.
        rest, _text = split_text(build_selector(state))
        parse_selector(rest)


def test_sync_state_in_the_table_changes_as_the_engine_works(qtbot: Any, window: Any,
                                                             service: BenchService) -> None:
    populate(service)
    window.refresh()
    wait_rows(qtbot, window)
    # No central store is configured here: waiting rows say so instead of "Waiting" forever.
    qtbot.waitUntil(lambda: window.model.index(0, SYNC).data() == "Local only", timeout=10_000)
    assert "no central store" in window.model.index(0, SYNC).data(Qt.ItemDataRole.ToolTipRole)
    assert window.model.index(0, SYNC).data(Qt.ItemDataRole.ForegroundRole) is None
    mark_synced(service, "temperature-0")  # a commit by another connection
    qtbot.waitUntil(lambda: window.model.index(0, SYNC).data() == "Synced", timeout=10_000)
    qtbot.waitUntil(lambda: window.sync_snapshot is not None and
                    window.sync_snapshot.counts.get("confirmed") == 1, timeout=10_000)
    assert "9 waiting" in window.sync_indicator.text.text()


# -- capture -------------------------------------------------------------------------------


def drop(win: Any, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPointF(win.rect().center()), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(win.rect().center()), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, event)


def test_a_drag_over_the_window_shows_where_the_files_will_go(qtbot: Any, window: Any,
                                                               tmp_path: Path) -> None:
    from PySide6.QtGui import QDragLeaveEvent

    (tmp_path / "run1.csv").write_text("t\n1\n", encoding="utf-8")
    (tmp_path / "plate").mkdir()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "run1.csv")),
                  QUrl.fromLocalFile(str(tmp_path / "plate"))])
    enter = QDragEnterEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    overlay = window.drop_overlay
    assert overlay.isVisible() and overlay.geometry() == window.rect()
    assert overlay.text().startswith("Drop to capture 1 file and 1 folder into this bench")
    grab(window, "drop-highlight.png")
    QApplication.sendEvent(window, QDragLeaveEvent())
    assert not overlay.isVisible()
    QApplication.sendEvent(window, enter)
    assert overlay.isVisible()
    drop(window, [tmp_path / "run1.csv"])
    assert not overlay.isVisible()
    qtbot.waitUntil(lambda: window.dialog is not None)
    window.dialog.reject()


def test_dropping_files_and_a_folder_captures_them(qtbot: Any, window: Any, tmp_path: Path,
                                                   service: BenchService) -> None:
    one = tmp_path / "run1.csv"
    one.write_text("t,v\n1,2\n2,3\n", encoding="utf-8")
    folder = tmp_path / "plate"
    folder.mkdir()
    (folder / "a.txt").write_text("a", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("bb", encoding="utf-8")
    drop(window, [one, folder])
    qtbot.waitUntil(lambda: window.dialog is not None and window.dialog.capture_button.isEnabled())
    dialog = window.dialog
    assert [p.name for p in dialog.files] == ["run1.csv", "a.txt", "b.txt"]
    dialog.form.ownership.fields["experiment"].setEditText("EXP42")
    dialog.form.ownership.fields["user"].setEditText("alice")
    dialog.form.metadata.add_row("sample", "S-7")
    with qtbot.waitSignal(window.capture_panel.finished, timeout=10_000):
        qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    assert window.dialog is None and window.capture_dock.isVisible()
    ids = [item.datapoint_id for item in window.capture_queue.items()]
    assert len(ids) == 3 and all(ids)
    stored = service.get(ids[0])
    assert isinstance(stored, FileDataPoint)
    assert stored.label == "run1.csv" and stored.size_bytes == one.stat().st_size
    assert stored.custom_metadata["experiment_name"] == "EXP42"
    assert stored.custom_metadata["sample"] == "S-7"
    assert stored.ownership_info.experiment_id == service.ownership(experiment="EXP42").experiment_id
    # Files from the dropped folder keep where they sat in it (label and custom metadata).
    deep = service.get(ids[2])
    assert deep.label == "plate/sub/b.txt"
    assert deep.custom_metadata["relative_path"] == "plate/sub/b.txt"
    assert "relative_path" not in stored.custom_metadata  # dropped by itself
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 3
    assert "plate/sub/b.txt" in labels_shown(window)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == ids[0])
    # The next capture carries the names over, visibly, and one click clears them; free
    # metadata does not carry over unless pinned.
    drop(window, [one])
    qtbot.waitUntil(lambda: window.dialog is not None and window.dialog.capture_button.isEnabled())
    form = window.dialog.form
    assert form.ownership.fields["experiment"].currentText() == "EXP42"
    assert form.ownership.carried() == ["experiment", "user"]
    assert form.ownership.fields["experiment"].property("carried")
    assert "Carried over from the last capture" in form.ownership.fields["experiment"].toolTip()
    assert form.carried_note.text() == "Carried over: experiment EXP42, user alice"
    assert form.metadata.metadata() == {}
    grab(window.dialog, "capture-dialog-carried.png")
    form.ownership.fields["user"].setEditText("bob")  # typed for this capture: not carried
    assert form.ownership.carried() == ["experiment"]
    form.clear_carried_button.click()
    assert form.ownership.names() == {"user": "bob"} and not form.carried_note.isVisible()
    form.metadata.add_row("sample", "S-8")
    form.pin_metadata.setChecked(True)
    with qtbot.waitSignal(window.captured, timeout=10_000):
        qtbot.mouseClick(window.dialog.capture_button, Qt.MouseButton.LeftButton)
    drop(window, [one])
    qtbot.waitUntil(lambda: window.dialog is not None and window.dialog.capture_button.isEnabled())
    form = window.dialog.form
    assert form.metadata.metadata() == {"sample": "S-8"} and form.pin_metadata.isChecked()
    assert form.carried_note.text() == "Carried over: user bob, pinned metadata"
    window.dialog.reject()


def test_value_dialog_rejects_bad_json_and_accepts_good(qtbot: Any, window: Any,
                                                        service: BenchService) -> None:
    dialog = window.new_value()
    editor = dialog.editor
    for bad in ('{"t": 21.5', "{'single': 1}", '{"t": NaN}', ""):
        editor.setPlainText(bad)
        qtbot.waitUntil(lambda: not dialog.save_button.isEnabled())
        assert dialog.message.text() != "Valid JSON"
    editor.setPlainText('{"t": NaN}')
    qtbot.waitUntil(lambda: "NaN" in dialog.message.text())
    editor.setPlainText('{"t": 21.5, "ok": [1, 2, {"deep": null}]}')
    qtbot.waitUntil(dialog.save_button.isEnabled)
    assert dialog.message.text() == "Valid JSON"
    dialog.form.label.setText("chamber")
    dialog.form.ownership.fields["experiment"].setEditText("EXP42")
    with qtbot.waitSignal(window.captured, timeout=10_000) as captured:
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    value = service.get(captured.args[0][0])
    assert value.value == {"t": 21.5, "ok": [1, 2, {"deep": None}]}
    assert value.label == "chamber"
    qtbot.waitUntil(lambda: window.detail.preview.kind == "json")
    assert window.detail.preview.json.topLevelItem(0).childCount() == 2


def test_the_detail_pane_says_local_only_as_the_table_does(qtbot: Any, window: Any,
                                                           service: BenchService) -> None:
    """Without a central store the selected row's details read "Local only" too (they said
    "Waiting", in words the table no longer uses)."""
    captured = service.capture_value({"a": 1}, label="here")
    window.refresh()
    wait_rows(qtbot, window)
    window.table.selectRow(0)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == captured.datapoint_id)
    qtbot.waitUntil(lambda: window.model.index(0, SYNC).data() == "Local only", timeout=10_000)
    qtbot.waitUntil(lambda: "Local only" in window.detail.subtitle.text(), timeout=10_000)
    assert "Waiting" not in window.detail.subtitle.text()
    assert "no central store" in window.detail.subtitle.toolTip()


def test_edit_and_delete(qtbot: Any, window: Any, service: BenchService,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    captured = service.capture_value({"a": 1}, label="old", metadata={"k": "v"})
    window.refresh()
    wait_rows(qtbot, window)
    window.table.selectRow(0)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == captured.datapoint_id)
    window.edit_action.trigger()
    qtbot.waitUntil(lambda: window.dialog is not None)
    dialog = window.dialog
    dialog.label.setText("new")
    dialog.metadata.add_row("sample", "S-1")
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()
    edited = service.get_stored(captured.datapoint_id)
    assert edited.datapoint.label == "new" and edited.revision == 2
    assert edited.datapoint.custom_metadata == {"k": "v", "sample": "S-1"}
    qtbot.waitUntil(lambda: window.model.index(0, LABEL).data() == "new", timeout=10_000)

    monkeypatch.setattr("app.ui.main_window.confirm_delete", lambda *_a: False)
    window.delete_action.trigger()
    wait_idle(qtbot, window)
    assert service.count() == 1  # cancelled
    monkeypatch.setattr("app.ui.main_window.confirm_delete", lambda *_a: True)
    window.delete_action.trigger()
    qtbot.waitUntil(lambda: service.count() == 0, timeout=10_000)
    qtbot.waitUntil(lambda: window.model.rowCount() == 0, timeout=10_000)
    tomb = service.store.get_stored(captured.datapoint_id, include_deleted=True)
    assert tomb.deleted and tomb.sync_state == "pending"  # a tombstone for sync


# -- inspect ------------------------------------------------------------------------------------


def make_png(path: Path) -> Path:
    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(QColor("#1565c0"))
    assert image.save(str(path))
    return path


def test_detail_pane_shows_a_captured_image_and_a_csv(qtbot: Any, window: Any, tmp_path: Path,
                                                     service: BenchService) -> None:
    png = make_png(tmp_path / "plate.png")
    tiff = tmp_path / "scan.tif"
    assert QImage(str(png)).save(str(tiff))
    csv_file = tmp_path / "spectrum.csv"
    csv_file.write_text("wavelength,absorbance,blank\n" + "".join(
        f"{400 + i},{(i % 17) / 10},{0.1}\n" for i in range(120)), encoding="utf-8")
    owner = service.ownership(experiment="EXP42", user="alice")
    ids = {}
    for path in (png, tiff, csv_file):
        ids[path.name] = service.capture_file(path, label=path.name, ownership=owner).datapoint_id
    window.refresh()
    wait_rows(qtbot, window)

    for name, kind in (("plate.png", "image"), ("scan.tif", "image"), ("spectrum.csv", "csv")):
        with qtbot.waitSignal(window.detail.preview_shown, timeout=10_000) as shown:
            window.select_id(ids[name])
        assert shown.args == [kind]
    preview = window.detail.preview
    assert preview.table.columnCount() == 3 and preview.table.rowCount() == 120
    assert preview.plot.x_name == "wavelength"
    assert list(preview.plot.series) == ["absorbance", "blank"]
    facts = tree_text(window.detail.facts)
    assert "EXP42" in facts and "alice" in facts
    dp = service.get(ids["spectrum.csv"])
    assert dp.sha256 in facts and str(csv_file) in facts


def tree_text(tree: Any) -> str:
    lines = []
    for i in range(tree.topLevelItemCount()):
        top = tree.topLevelItem(i)
        lines.append(top.text(0))
        for j in range(top.childCount()):
            lines.append(f"{top.child(j).text(0)}: {top.child(j).text(1)}")
    return "\n".join(lines)


def test_save_copy_writes_the_file(qtbot: Any, window: Any, tmp_path: Path,
                                   service: BenchService) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    dp = service.capture_file(source, label="bin")
    window.refresh()
    wait_rows(qtbot, window)
    window.select_id(dp.datapoint_id)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == dp.datapoint_id)
    target = tmp_path / "out" / "copy.bin"
    window.detail.save_copy(str(target))
    qtbot.waitUntil(target.exists, timeout=10_000)
    assert target.read_bytes() == source.read_bytes()


def test_open_makes_a_fresh_read_only_copy_each_time_and_says_when_nothing_can_open_it(
        qtbot: Any, window: Any, tmp_path: Path, service: BenchService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for the desktop's launcher (QDesktopServices.openUrl), which offscreen tests
    cannot start: it records what it was asked to open and answers as told."""
    from PySide6.QtGui import QDesktopServices

    source = tmp_path / "run.csv"
    source.write_bytes(b"t,v\n1,2\n")
    dp = service.capture_file(source, label="run")
    opened: list[Path] = []
    launcher_exists = True

    def open_url(url: QUrl) -> bool:
        opened.append(Path(url.toLocalFile()))
        return launcher_exists

    monkeypatch.setattr(QDesktopServices, "openUrl", open_url)
    window.refresh()
    wait_rows(qtbot, window)
    window.select_id(dp.datapoint_id)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == dp.datapoint_id)
    window.detail.open_external()
    qtbot.waitUntil(lambda: len(opened) == 1, timeout=10_000)
    first = opened[0]
    assert first.read_bytes() == source.read_bytes()
    assert first.stat().st_mode & 0o222 == 0  # read-only for everyone
    first.chmod(0o644)
    first.write_bytes(b"edited by a spreadsheet")  # an external program changed its copy
    window.detail.open_external()
    qtbot.waitUntil(lambda: len(opened) == 2, timeout=10_000)
    assert opened[1] != first and opened[1].read_bytes() == source.read_bytes()

    launcher_exists = False
    with qtbot.waitSignal(window.detail.message, timeout=10_000) as said:
        window.detail.open_external()
    assert said.args[0].startswith("No program is set up to open .csv files")


# -- layout, settings, watched folders ---------------------------------------------------------


def test_window_remembers_its_size_and_layout(qtbot: Any, service: BenchService) -> None:
    from app.ui.application import build_window

    first = build_window(service)
    qtbot.addWidget(first)
    first.resize(1500, 900)
    first.show()
    first.splitter.setSizes([500, 900])
    first.show_sync_panel()
    sizes, size = first.splitter.sizes(), first.size()
    assert size.width() == 1500
    first.close()
    first.context.tasks.shutdown()
    second = build_window(service)
    qtbot.addWidget(second)
    second.show()
    try:
        # The offscreen screen is 800x600, so Qt clamps the restored geometry; the saved
        # geometry itself round-trips.
        assert second.context.settings.value("window/geometry") is not None
        assert second.context.settings.value("window/splitter") is not None
        assert sizes[0] < sizes[1] and second.splitter.sizes()[0] > 0
        assert second.sync_dock.isVisible()
    finally:
        second.close()
        second.context.tasks.shutdown()


def test_keyboard_shortcuts_are_set(window: Any) -> None:
    shortcuts = {a.objectName(): a.shortcut().toString() for a in window.actions()}
    assert shortcuts["capture"] and shortcuts["newValue"] and shortcuts["find"]
    assert shortcuts["edit"] == "F2" and shortcuts["delete"]
    assert shortcuts["settings"] and shortcuts["refresh"]
    assert shortcuts["showLogs"]


def test_watched_folder_dialog_round_trips_a_rule(qtbot: Any, window: Any, tmp_path: Path,
                                                  service: BenchService) -> None:
    from app.ingest.rules import load_rules

    folder = tmp_path / "instrument-out"
    folder.mkdir()
    panel = window.watch_panel
    dialog = panel.add_rule()
    dialog.folder.setText(str(folder))
    dialog.name.setText("HPLC out")
    dialog.include.setText("*.csv, *.txt")
    dialog.template.setText("{experiment}/{sample}/*")
    dialog.label_template.setText("{sample}-{stem}")
    dialog.metadata.add_row("user", "alice")
    dialog.sample.setText("EXP42/S-7/run1.csv")
    assert "Label: S-7-run1" in dialog.sample_result.text()
    assert "experiment=EXP42" in dialog.sample_result.text()
    dialog.sample.setText("loose.csv")
    assert "does not match" in dialog.sample_result.text()
    with qtbot.waitSignal(panel.changed, timeout=10_000):
        dialog.accept()
    rules = load_rules(service.paths)
    assert len(rules) == 1
    rule = rules[0]
    assert (rule.name, rule.include, rule.path_template, rule.label_template, rule.metadata) == (
        "HPLC out", ["*.csv", "*.txt"], "{experiment}/{sample}/*", "{sample}-{stem}",
        {"user": "alice"})
    assert panel.table.rowCount() == 1
    panel.table.selectRow(0)
    with qtbot.waitSignal(panel.changed, timeout=10_000):
        panel.toggle_selected()
    assert load_rules(service.paths)[0].enabled is False
    assert panel.table.item(0, 3).text() == "paused"
    panel.table.selectRow(0)
    edit = panel.edit_selected()
    assert edit is not None and edit.template.text() == "{experiment}/{sample}/*"
    edit.quiet.setValue(7)
    with qtbot.waitSignal(panel.changed, timeout=10_000):
        edit.accept()
    assert load_rules(service.paths)[0].quiet_seconds == 7
    panel.table.selectRow(0)
    with qtbot.waitSignal(panel.changed, timeout=10_000):
        panel.remove_selected(confirmed=True)
    assert load_rules(service.paths) == []


def test_a_replaced_query_stops_reading(service: BenchService) -> None:
    from app.ui.rowsource import Cancelled

    service.submit_many([ValueDataPoint(label=f"r{i}", value=i) for i in range(3000)])
    source = RowSource(service.store)
    selector = {"label": {"$regex": "r1"}}
    assert source.count(selector) == 1111
    with pytest.raises(Cancelled):
        source.count(selector, keep_going=lambda: False)
    assert source.all_rowids(None, "-data_timestamp", keep_going=lambda: False) is None
    assert source.count(selector) == 1111  # the pooled connection is usable again


def test_show_logs_shows_the_newest_lines_of_each_log(qtbot: Any, window: Any) -> None:
    from app.admin.logs import LOG_NAME, WINDOW_LOG_NAME, log_file

    paths = window.context.service.paths
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    log_file(paths, LOG_NAME).write_text(
        "".join(f"service line {n}\n" for n in range(1500)), encoding="utf-8")
    viewer = window.show_logs()
    # This window does the work (it is attached to no service): its own log comes first.
    assert viewer.which.currentData() == WINDOW_LOG_NAME
    viewer.which.setCurrentIndex(viewer.which.findData(LOG_NAME))
    qtbot.waitUntil(lambda: "service line 1499" in viewer.text.toPlainText())
    shown = viewer.text.toPlainText().splitlines()
    assert len(shown) == 1000 and shown[0] == "service line 500"
    assert str(log_file(paths, LOG_NAME)) in viewer.location.text()
    viewer.which.setCurrentIndex(viewer.which.findData(WINDOW_LOG_NAME))
    qtbot.waitUntil(lambda: "No log yet" in viewer.text.toPlainText())
    log_file(paths, WINDOW_LOG_NAME).write_text("window line\n", encoding="utf-8")
    viewer.reload()
    qtbot.waitUntil(lambda: viewer.text.toPlainText() == "window line")
    grab(viewer, "log-viewer.png")
    viewer.close()


def test_not_yet_synced_shows_every_state_that_is_not_safe_centrally(
        qtbot: Any, window: Any, service: BenchService) -> None:
    """Every state the engine mirrors onto a row (one vocabulary, app/core/syncstate.py):
    the "Not yet synced" filter showed none in state recorded before it was shared."""
    from app.core.syncstate import SyncState

    for state in SyncState:
        service.capture_value({"s": str(state)}, label=f"state-{state}")
        with service.store.transaction() as conn:  # stands in for the engine, as above
            conn.execute("UPDATE datapoints SET sync_state = ? WHERE label = ?",
                         (str(state), f"state-{state}"))
    window.refresh()
    bar = window.filter_bar
    bar.sync_combo.setCurrentIndex(bar.sync_combo.findData("unsynced"))
    wait_rows(qtbot, window)
    assert sorted(labels_shown(window)) == sorted(
        f"state-{s}" for s in SyncState if s != SyncState.CONFIRMED)
    # No central store here, so what waits says "Local only" (each state's own word shows
    # once one is configured: tests/ui/test_ui_settings_sync.py).
    shown = {window.model.index(row, SYNC).data() for row in range(window.model.rowCount())}
    assert shown == {"Local only", "Needs attention"}


def test_the_detail_pane_follows_the_selection_into_a_search_that_hides_it(
        qtbot: Any, window: Any, service: BenchService) -> None:
    """A search that hides the shown row empties the detail pane: no Edit or Delete on a row
    the operator cannot see. A search that keeps it keeps it selected and shown."""
    alpha = service.capture_value({"a": 1}, label="alpha")
    service.capture_value({"b": 2}, label="beta")
    window.refresh()
    wait_rows(qtbot, window)
    window.select_id(alpha.datapoint_id)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == alpha.datapoint_id)
    assert window.detail.edit_button.isEnabled()

    window.filter_bar.search.setText("alph")
    window.filter_bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == ["alpha"]
    assert window.selected_rows() == [0] and window.detail.datapoint_id == alpha.datapoint_id

    window.filter_bar.search.setText("beta")
    window.filter_bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == ["beta"]
    qtbot.waitUntil(lambda: window.detail.datapoint_id is None, timeout=10_000)
    assert not window.detail.edit_button.isEnabled()
    assert not window.detail.delete_button.isEnabled()
    assert not window.edit_action.isEnabled() and not window.delete_action.isEnabled()


def test_first_start_asks_for_operator_and_instrument_once(qtbot: Any, window: Any) -> None:
    dialog = window.ask_first_run_questions()
    assert dialog is not None and dialog.isVisible()
    grab(dialog, "first-run.png")
    dialog.fields["user"].setText("alice")
    dialog.fields["node"].setText("hplc-2")
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()
    assert window.context.bench_identity()["user"] == "alice"
    assert window.context.bench_identity()["node"] == "hplc-2"
    assert window.ask_first_run_questions() is None  # answered: never asked again


def test_first_start_question_can_be_skipped_for_good(qtbot: Any, window: Any) -> None:
    dialog = window.ask_first_run_questions()
    assert dialog is not None
    dialog.skip_button.click()
    qtbot.waitUntil(lambda: window.dialog is None)
    assert window.context.bench_identity().get("user") is None
    assert window.ask_first_run_questions() is None
