"""Names as ownership in the window (edit dialog, pinned names) and its full-text search box."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import grab, wait_idle
from tests.ui.test_ui_window import labels_shown, wait_rows

from app.core.ids import new_ulid
from app.service import BenchService
from app.ui.table_model import EXPERIMENT


def _open_edit(qtbot: Any, window: Any, datapoint_id: str) -> Any:
    window.refresh()
    wait_rows(qtbot, window)
    window.table.selectRow(0)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == datapoint_id)
    window.edit_action.trigger()
    qtbot.waitUntil(lambda: window.dialog is not None)
    return window.dialog


def test_edit_dialog_moves_a_datapoint_to_another_experiment(qtbot: Any, window: Any,
                                                             service: BenchService) -> None:
    captured = service.capture_value(
        {"t": 1}, label="run", metadata={"sample": "S1"},
        ownership=service.ownership(experiment="EXP42", user="alice"))
    dialog = _open_edit(qtbot, window, captured.datapoint_id)
    # The names are ownership fields, not free metadata.
    assert dialog.metadata.metadata() == {"sample": "S1"}
    assert dialog.ownership.fields["experiment"].currentText() == "EXP42"
    assert dialog.ownership.fields["user"].currentText() == "alice"
    dialog.ownership.fields["experiment"].setEditText("EXP43")
    grab(dialog, "edit-dialog-move-experiment.png")
    with qtbot.waitSignal(dialog.saved, timeout=10_000):
        dialog.save()

    moved = service.get_stored(captured.datapoint_id)
    assert moved.revision == 2
    exp43 = service.names.lookup("experiment", "EXP43")
    assert moved.datapoint.ownership_info.experiment_id == exp43
    assert moved.datapoint.ownership_info.user_id == captured.ownership_info.user_id
    assert moved.datapoint.custom_metadata == {"sample": "S1", "experiment_name": "EXP43",
                                               "user_name": "alice"}
    bar = window.filter_bar
    bar.experiment.setEditText("EXP43")
    bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == ["run"]
    assert window.model.index(0, EXPERIMENT).data() == "EXP43"
    bar.experiment.setEditText("EXP42")
    bar.apply()
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 0


def test_edit_dialog_refuses_a_name_key_as_metadata(qtbot: Any, window: Any,
                                                    service: BenchService) -> None:
    captured = service.capture_value(1, label="run",
                                     ownership=service.ownership(experiment="EXP42"))
    dialog = _open_edit(qtbot, window, captured.datapoint_id)
    dialog.metadata.add_row("experiment_name", "EXP43")
    dialog.save()
    wait_idle(qtbot, window)
    assert "Belongs to" in dialog.message.text()
    assert service.get_stored(captured.datapoint_id).revision == 1


def test_a_pinned_name_filters_the_table_as_queries_do(qtbot: Any, window: Any,
                                                       service: BenchService) -> None:
    service.capture_value(1, label="before pin", ownership=service.ownership(experiment="EXP42"))
    madsci_id = new_ulid()
    service.names.pin("experiment", "EXP42", madsci_id)
    after = service.capture_value(2, label="after pin",
                                  ownership=service.ownership(experiment="EXP42"))
    assert after.ownership_info.experiment_id == madsci_id
    by_query = [dp.label for dp in service.query({"ownership_info.experiment_id": "EXP42"}).items]
    assert by_query == ["after pin"]

    window.refresh()
    wait_rows(qtbot, window)
    bar = window.filter_bar
    bar.experiment.setEditText("EXP42")
    bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == by_query
    bar.experiment.setEditText("")
    bar.advanced_toggle.setChecked(True)
    bar.advanced.setText('{"ownership_info.experiment_id": "EXP42"}')
    bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == by_query


def test_search_box_finds_metadata_values_and_nested_strings(qtbot: Any, window: Any,
                                                             service: BenchService) -> None:
    service.capture_value({"note": "cloudy buffer"}, label="first")
    service.capture_value(3, label="second", metadata={"sample": "S1"})
    service.capture_value(4, label="third", ownership=service.ownership(user="alice"))
    window.refresh()
    wait_rows(qtbot, window)
    bar = window.filter_bar
    for text, expected in (("S1", ["second"]), ("cloudy", ["first"]), ("buff", ["first"]),
                           ("alice", ["third"]), ('"unbalanced AND (', [])):
        bar.search.setText(text)
        bar.apply()
        wait_rows(qtbot, window)
        assert labels_shown(window) == expected, text
    # Combined with a quick filter and the advanced query.
    bar.search.setText("S1")
    bar.advanced_toggle.setChecked(True)
    bar.advanced.setText('{"label": "first"}')
    bar.apply()
    wait_rows(qtbot, window)
    assert window.model.rowCount() == 0
    bar.advanced.setText('{"label": "second"}')
    bar.apply()
    wait_rows(qtbot, window)
    assert labels_shown(window) == ["second"]
