"""The rule dialog's completeness profile, and the panel saying what a folder waits for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.ui.conftest import grab, wait_idle

from app.ingest.component import IngestComponent
from app.ingest.rules import WatchRule, load_rules
from app.ingest.watcher import WorkerOptions
from app.service import BenchService

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def test_the_rule_dialog_shows_what_the_chosen_profile_waits_for(
        qtbot: Any, window: Any, tmp_path: Path) -> None:
    dialog = window.watch_panel.add_rule()
    dialog.folder.setText("/data/avance-neo/nmr")  # need not exist yet (a share)
    assert dialog.waits_for.text() == "A file is complete when it has not changed for 2 s."
    assert not dialog.dataset_depth.isEnabled()  # files, not folders

    dialog.profile.setCurrentIndex(dialog.profile.findData("bruker-nmr"))
    dialog.dataset_depth.setValue(2)
    assert dialog.dataset_depth.isEnabled()
    assert dialog.waits_for.text() == (
        "Each folder 2 levels below the watched folder is one dataset (one zip archive); it is "
        "complete when it is a Bruker NMR experiment holding `acqus`, `pulseprogram` and "
        "`fid` or `ser`, and nothing in it has changed for 2 s.")
    dialog.name.setText("Avance NMR")
    dialog.resize(620, 800)
    grab(dialog, "watch-rule-dialog-profile.png")

    # Wrong options are said where they are typed, and the rule is not saved with them.
    dialog.profile.setCurrentIndex(dialog.profile.findData("marker"))
    dialog.profile_options.add_row("colour", "red")
    assert "unknown option colour; this profile takes marker, capture_markers" in \
        dialog.waits_for.text()
    dialog._check_and_accept()
    assert dialog.isVisible() and "unknown option colour" in dialog.message.text()
    dialog.profile_options.clear()
    dialog.profile_options.add_row("marker", "*.complete")
    assert dialog.waits_for.text() == ("A file is complete when a marker file matching "
                                       "`*.complete` exists beside it, and it has not changed "
                                       "for 2 s.")
    with qtbot.waitSignal(window.watch_panel.changed, timeout=10_000):
        dialog._check_and_accept()
    [rule] = load_rules(window.context.service.paths)
    assert rule.profile == "marker" and rule.profile_options == {"marker": "*.complete"}

    # Editing shows the saved profile again.
    window.watch_panel.table.selectRow(0)
    edit = window.watch_panel.edit_selected()
    assert edit.profile.currentData() == "marker"
    assert "`*.complete`" in edit.waits_for.text()
    edit.reject()


def test_the_panel_shows_what_a_folder_waits_for_right_now(
        qtbot: Any, window: Any, service: BenchService, tmp_path: Path) -> None:
    from app.ingest.rules import add_rule

    folder = tmp_path / "nmr"
    experiment = folder / "sample" / "1"
    experiment.mkdir(parents=True)
    (experiment / "acqus").write_text("##TITLE= Parameter file\n")
    (experiment / "pulseprogram").write_text(";zg30\n")
    rule: WatchRule = add_rule(service.paths, str(folder), profile="bruker-nmr",
                               dataset_depth=2, quiet_seconds=0.2, observer="native")
    component = IngestComponent(service, [rule],
                                options=WorkerOptions(liveness_interval=0.1, marker_recheck=0.05))
    component.start()
    try:
        window.watch_panel.status_provider = lambda: {s.rule_id: s for s in component.status()}
        qtbot.waitUntil(lambda: bool(component.worker(rule.id).status().waiting_for),
                        timeout=15_000)
        window.watch_panel.reload()
        wait_idle(qtbot, window)
        state = window.watch_panel.table.item(0, 3).text()
        assert "sample/1: waiting for `fid` or `ser`" in state
    finally:
        component.stop()
