"""The main window's watched-folders part: their health in the status bar, Scan now, rules.

Statuses come from the watcher this window hosts, else as the capture service publishes
them (``app.ingest.health``).
"""

from __future__ import annotations

import time
from typing import Any

from app.ui.tasks import describe_error

#: How often, without any commit, the status bar looks at the watched folders' health
#: again: a published status ages into "not running" without anyone writing.
WATCH_HEALTH_MS = 5000


class WatchControl:
    """Mixed into ``MainWindow``: watched folders' health, scans and rules."""

    def _watch_statuses(self) -> dict[str, Any]:
        """Each folder's status (call off the GUI thread): from the watcher this window
        hosts, else as the capture service publishes it (``app.ingest.health``), where an
        old heartbeat reads "not running" whatever the last snapshot said."""
        import dataclasses

        component = self.component("watch")
        if component is not None:
            return {status.rule_id: status for status in component.status()}
        published = self._health_board().read()
        return {rule_id: (dataclasses.replace(p.status, state="not running", observer="none")
                          if p.stale else p.status) for rule_id, p in published.items()}

    def _check_watch_health_if_due(self) -> None:
        if time.monotonic() - self._health_checked_at >= WATCH_HEALTH_MS / 1000:
            self.check_watch_health()

    def check_watch_health(self) -> None:
        """Warn in the status bar when a watched folder needs attention (missing, files it
        cannot capture, or no watcher running it while capture should run)."""
        if self._closing:
            return
        self._health_checked_at = time.monotonic()
        from app.ingest.rules import load_rules

        paths, statuses = self.context.service.paths, self._watch_statuses
        capture_runs = self.runner is not None or self.attachment is not None

        def work() -> list[str]:
            found = statuses()
            problems: list[str] = []
            for rule in (r for r in load_rules(paths) if r.enabled):
                status = found.get(rule.id)
                if status is None or status.state == "not running":
                    if capture_runs:
                        problems.append(f"{rule.name}: not watched")
                elif status.state in ("missing", "stopped"):
                    problems.append(f"{rule.name}: {status.state}")
                elif status.problems:
                    problems.append(f"{rule.name}: {len(status.problems)} file(s) not captured")
            return problems

        self.context.tasks.run(work, self._show_watch_health, lambda _e: None)

    def _show_watch_health(self, problems: list[str]) -> None:
        if self.tray is not None:
            self.tray.show_folder_problems(problems)
        self.watch_health.setVisible(bool(problems))
        if problems:
            self.watch_health.setText(f"⚠ {len(problems)} watched folder"
                                      f"{'s' if len(problems) != 1 else ''} need"
                                      f"{'' if len(problems) != 1 else 's'} attention")
            self.watch_health.setToolTip("\n".join(problems))

    def _health_board(self) -> Any:
        """The watched folders' published health (built once: it checks its table)."""
        from app.ingest.health import HealthBoard

        if self._health is None:
            self._health = HealthBoard(self.context.service.store)
        return self._health

    def _request_scan(self, rule_id: str) -> None:
        """Scan now: the hosted watcher directly, the service's through the store."""
        component = self.component("watch")
        if component is not None:
            component.rescan(rule_id)
            return
        self._health_board().request_scan(rule_id)

    def apply_watch_rules(self) -> None:
        """Give the hosted watcher the saved rules (starting it if it was not running)."""
        if self.runner is None or not hasattr(self.runner, "reload"):
            return
        runner = self.runner
        self.context.tasks.run(lambda: runner.reload("watch"), None,
                               lambda error: self.show_message(
                                   f"The watcher could not take the new rules: "
                                   f"{describe_error(error)}"))

    def toggle_watch_panel(self) -> None:
        if self.watch_dock.isVisible():
            self.watch_dock.hide()
        else:
            self.watch_dock.show()
            self.watch_dock.raise_()
            self.watch_panel.reload()
