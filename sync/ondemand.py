"""Datapoints outside this bench's pull scope, read from the central store when asked for
by id (``BenchService.get``, so the REST API, the Python API, the CLI and the window), or
found there by a query that goes central (``BenchService.query_central``,
:mod:`sync.centralquery`).

The record is read, checked and kept as a pulled row (``origin = 'remote'``), exactly as
the pull stores one; its file, if any, then comes through the one path for bytes
(``sync.fetch``). A central store that cannot be reached leaves the answer "not found"
(logged): asking for an id must not fail harder than it did without a central store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Optional

from app.core.errors import BenchDataError, CentralUnavailableError
from app.core.ids import is_ulid
from app.core.models import DataPoint
from app.service import BenchService

from sync.backends import REAL_BACKENDS, Backends, RecordBackend
from sync.centralquery import central_filter, find_central
from sync.faults import SyncError
from sync.outbox import Outbox
from sync.pull import Puller, reading_zone
from sync.settings import CentralSettings, load_settings

log = logging.getLogger(__name__)


class CentralRecords:
    """Reads single records from the central MongoDB with one set of settings."""

    def __init__(self, settings: CentralSettings, backends: Backends = REAL_BACKENDS) -> None:
        self.settings = settings
        self.backends = backends
        self._central: Optional[RecordBackend] = None
        self._lock = threading.Lock()

    def _database(self) -> RecordBackend:
        with self._lock:
            if self._central is None:
                self._central = self.backends.records(self.settings)
            return self._central

    def pull(self, service: BenchService, datapoint_id: str) -> bool:
        """Store the central record of ``datapoint_id`` here; False if there is none (or
        the central store cannot be reached now)."""
        if not is_ulid(datapoint_id):
            return False
        try:
            outbox = Outbox(service.store)
            puller = Puller(service, outbox, self._database(), outbox.bench_id(),
                            self.settings.pull_overlap_s)
            return puller.pull_ids([datapoint_id.upper()]) > 0
        except (SyncError, BenchDataError) as exc:
            log.warning("datapoint %s is not here and the central store cannot be read: %s",
                        datapoint_id, exc)
            return False

    def query(self, service: BenchService, selector: Optional[Mapping[str, Any]],
              text: Optional[str], limit: int) -> list[DataPoint]:
        """Central datapoints matching a selector and search words, newest first, not
        stored here. Raises QueryError for a selector the central store cannot be asked,
        CentralUnavailableError when it cannot answer now."""
        mongo_filter = central_filter(selector, text, resolve_name=service.names.lookup)
        try:
            return find_central(self._database().datapoints, mongo_filter, limit,
                                reading_zone(service))
        except SyncError as exc:
            raise CentralUnavailableError(
                f"the central store cannot be searched now ({exc}); try again later, or "
                "search this bench without --central") from exc

    def close(self) -> None:
        with self._lock:
            central, self._central = self._central, None
        if central is not None:
            central.close()


def central_records(service: BenchService) -> Optional[CentralRecords]:
    """The reader for this bench's configured central MongoDB, or None when none is."""
    try:
        settings = load_settings(service.paths)
    except BenchDataError as exc:
        log.warning("central settings unusable; no records fetched on demand: %s", exc)
        return None
    return CentralRecords(settings) if settings.mongo_configured else None
