"""What every window part needs: the service, the task manager and the GUI preferences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QSettings

from app.core.config import load_section
from app.core.ids import OWNERSHIP_KINDS
from app.service import BenchService
from app.ui.operations import Operations
from app.ui.tasks import TaskManager

#: The configuration section with the bench's identity (names, not ids).
BENCH_SECTION = "bench"


@dataclass
class UiContext:
    service: BenchService
    tasks: TaskManager
    settings: QSettings
    #: Started with an explicit --data-dir: Settings cannot move the data directory.
    data_dir_given: bool = False
    #: What the window's own operations changed, for its views (app/ui/operations.py).
    operations: Operations = field(default_factory=Operations)

    def known_names(self) -> dict[str, list[str]]:
        """Names this bench has seen, per ownership kind (in memory: cheap)."""
        return {kind: [name for name, _ident in self.service.names.names(kind)]
                for kind in OWNERSHIP_KINDS}

    def bench_identity(self) -> dict[str, Any]:
        try:
            section = load_section(self.service.paths, BENCH_SECTION)
        except Exception:  # noqa: BLE001 - a broken config must not stop capture
            return {}
        return dict(section) if isinstance(section, dict) else {}


def gui_settings(service: BenchService) -> QSettings:
    """GUI preferences (window layout, last capture) beside the bench's configuration."""
    path = service.paths.config_dir / "gui.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)
