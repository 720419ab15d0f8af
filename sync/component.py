"""The sync engine as a component of ``benchdata run`` (and of the GUI's runner).

The component follows the configuration file: when the central-store settings change (the
desktop window attached to this service, ``benchdata sync configure``, the facility's
provisioning), it restarts the engine with the new settings, or stops it when the central
store is no longer configured, without restarting the service.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from app.core.config import ConfigFollower
from app.service import BenchService

from sync.engine import SyncEngine
from sync.settings import CentralSettings, load_settings

log = logging.getLogger(__name__)


class SyncComponent:
    """Runs the engine's background loop between ``start`` and ``stop``."""

    name = "sync"

    def __init__(self, service: BenchService, engine: Optional[SyncEngine]) -> None:
        #: None while no central store is configured (the component waits for settings).
        self.engine = engine
        self.service = service
        self._swap_lock = threading.Lock()
        self._follower = ConfigFollower(self.service.paths, self.apply_settings_edits,
                                        name="benchdata-sync-config")

    def start(self) -> None:
        with self._swap_lock:
            if self.engine is not None:
                self._run(self.engine)
        self._follower.start()

    def _run(self, engine: SyncEngine) -> None:
        engine.start()

    def _retire(self, engine: SyncEngine) -> None:
        engine.close()

    def apply_settings_edits(self) -> None:
        """Restart the engine if the central-store settings differ from the running ones."""
        settings: CentralSettings = load_settings(self.service.paths)
        with self._swap_lock:
            current = self.engine
            if current is not None and current.settings == settings:
                return  # another section (say, watch rules) changed
            if current is None and not settings.configured:
                return
            if current is not None:
                self._retire(current)
                self.engine = None
            if settings.configured:
                self.engine = SyncEngine(self.service, settings)
                self._run(self.engine)
        log.info("central store settings changed; sync %s",
                 "restarted with them" if settings.configured else "stopped (not configured)")

    def stop(self) -> None:
        self._follower.stop()
        with self._swap_lock:
            engine, self.engine = self.engine, None
            if engine is not None:
                self._retire(engine)


def make_component(service: BenchService, options: Any) -> Optional[SyncComponent]:
    """None when sync is switched off (``--no-sync``); without a configured central store
    the component idles until settings appear."""
    if not getattr(options, "sync", True):
        return None
    settings = load_settings(service.paths)
    if not settings.configured:
        log.info("no central store configured; sync waits for settings "
                 "(benchdata sync configure, or the window's Settings)")
        return SyncComponent(service, None)
    return SyncComponent(service, SyncEngine(service, settings))
