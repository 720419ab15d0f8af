"""The window's hosted mode runs the same component lifecycle as ``benchdata run``:
settings saved in the window reach the hosted components through
``HeadlessRunner.reload`` (no component is built or appended behind the runner's back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.ui.conftest import wait_idle

from app.service import BenchService


def test_saved_watch_rules_reach_the_hosted_watcher(qtbot: Any, service: BenchService,
                                                    tmp_path: Path) -> None:
    from app.ingest.rules import add_rule
    from app.ui.application import HostedComponents, build_window

    hosted = HostedComponents(service, api=False, sync=False)
    win = build_window(service)
    qtbot.addWidget(win)
    win.host_components(hosted)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.component("watch") is not None, timeout=20_000)
        watcher = win.component("watch")
        assert watcher.status() == []
        folder = tmp_path / "instrument"
        folder.mkdir()
        rule = add_rule(service.paths, str(folder))
        win.apply_watch_rules()  # what the watch panel's "saved" signal calls
        qtbot.waitUntil(lambda: [s.rule_id for s in watcher.status()] == [rule.id],
                        timeout=20_000)
        win.restart_sync()  # sync is switched off here: it stays off
        wait_idle(qtbot, win)
        names = [c.name for c in hosted.components]
        assert "watch" in names and "sync" not in names, names
        assert hosted.runner.component("watch") is watcher  # reloaded, not replaced
    finally:
        win.close()
        win.context.tasks.shutdown()
        hosted.stop()
