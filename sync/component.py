"""The sync engine as a component of ``benchdata run`` (and of the GUI's runner)."""

from __future__ import annotations

import logging
from typing import Any, Optional

from app.service import BenchService

from sync.engine import SyncEngine
from sync.settings import load_settings

log = logging.getLogger(__name__)


class SyncComponent:
    """Runs the engine's background loop between ``start`` and ``stop``."""

    name = "sync"

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine

    def start(self) -> None:
        # Files other benches stored download when someone asks for their bytes.
        self.engine.service.remote_files = self.engine.fetch_file
        self.engine.start()

    def stop(self) -> None:
        if self.engine.service.remote_files == self.engine.fetch_file:
            self.engine.service.remote_files = None
        self.engine.close()


def make_component(service: BenchService, options: Any) -> Optional[SyncComponent]:
    """None when sync is switched off or no central store is configured."""
    if not getattr(options, "sync", True):
        return None
    settings = load_settings(service.paths)
    if not settings.configured:
        log.info("no central store configured; sync is off (benchdata sync configure)")
        return None
    return SyncComponent(SyncEngine(service, settings))
