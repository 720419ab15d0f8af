"""The window shows custody (issue #11 item 3): the detail pane's chain of custody per file,
"safe to delete" per watched folder, and the last verify in the sync panel, over a real
sync with SeaweedFS + nx-27017."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.ui.conftest import grab, wait_idle

from app.ingest.ledger import Ledger, LedgerEntry
from app.service import BenchService
from sync.engine import SyncEngine
from sync.verify import Scrubber


def tree_text(tree: Any) -> str:
    lines = []

    def walk(item: Any, depth: int) -> None:
        lines.append("  " * depth + " | ".join(item.text(c) for c in range(2)))
        for index in range(item.childCount()):
            walk(item.child(index), depth + 1)

    for index in range(tree.topLevelItemCount()):
        walk(tree.topLevelItem(index), 0)
    return "\n".join(lines)


def _capture(service: BenchService, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(os.urandom(4000))
    return service.capture_file(folder / name, label=name).datapoint_id


def _show(qtbot: Any, window: Any, ident: str) -> str:
    with qtbot.waitSignal(window.detail.shown, timeout=10_000,
                          check_params_cb=lambda shown: shown == ident):
        window.detail.show_datapoint(ident)
    return tree_text(window.detail.facts)


def test_detail_pane_and_watch_panel_show_custody(qtbot: Any, window: Any,
                                                  service: BenchService, central: Any,
                                                  tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    first = _capture(service, instrument / "run 1", "trace.csv")
    second = _capture(service, instrument / "run 2", "trace.csv")

    before = _show(qtbot, window, first)
    assert "Custody" in before
    assert "Safe to delete from the instrument | no — no verified central copy yet" in before
    assert "Uploaded | not from this bench" in before

    with SyncEngine(service, central) as engine:
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
    third = _capture(service, instrument / "run 3", "trace.csv")  # after the sync
    Scrubber(service).run()

    after = _show(qtbot, window, first)
    assert "Safe to delete from the instrument | yes — the central copy is verified" in after
    assert f"Bucket name | {central.bucket}" in after
    assert "Central copy verified | " in after and "read back after upload" in after
    assert "Last verified by a scrub | local " in after and ": intact" in after
    assert "Copy on this bench | yes (captured" in after
    assert "Object name | " in after  # where this bench put it, in "Stored centrally"
    window.detail.tabs.setCurrentWidget(window.detail.facts)
    window.resize(1500, 860)
    window.splitter.setSizes([560, 940])
    grab(window.detail, "detail-custody.png")

    with qtbot.waitSignal(window.watch_panel.changed, timeout=10_000):
        window.watch_panel.save_new(str(instrument), {"name": "HPLC out",
                                                      "include": ["*.csv"]})
    rule_id = window.watch_panel.rules[0].id
    Ledger(service.store).record([
        LedgerEntry(rule_id, f"run {n}/trace.csv", 4000, 0, str(service.get(i).sha256), i)
        for n, i in enumerate((first, second, third), start=1)])
    window.watch_panel.reload()
    qtbot.waitUntil(lambda: window.watch_panel.table.item(0, 4) is not None and
                    window.watch_panel.table.item(0, 4).text() == "2 of 3 files",
                    timeout=10_000)
    wait_idle(qtbot, window)
