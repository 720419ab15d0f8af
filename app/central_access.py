"""The central store as the service reaches it on first need.

Two readers, each built lazily from the central settings and rebuilt when the
configuration files change: the fetcher of central-only files (``BenchService.file_blob``)
and the reader of records outside this bench's pull scope (``BenchService.get`` and
``BenchService.query_central``). Both
live in the sync package, which sits above the service: they are imported here on first
need, the upward imports listed in pyproject.toml's import-linter contract.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from app.core.config import config_stamp

if TYPE_CHECKING:
    from app.service import BenchService

_FETCH_LOCK_STRIPES = 64


class CentralAccess:
    """The service's lazily built links to the central store (thread-safe)."""

    def __init__(self, service: BenchService) -> None:
        self._service = service
        # The downloader of central-only files, built lazily from the settings and rebuilt
        # when the configuration files change (see file_blob).
        self._fetcher: Any = None
        self._fetcher_stamp: Any = None
        self._fetcher_lock = threading.Lock()
        self._fetching = tuple(threading.Lock() for _ in range(_FETCH_LOCK_STRIPES))
        #: (config stamp, reader or None) for datapoints outside the pull scope (get).
        self._records: tuple[Any, Any] = (object(), None)

    def close(self) -> None:
        with self._fetcher_lock:
            fetcher, self._fetcher = self._fetcher, None
            _stamp, records = self._records
            self._records = (object(), None)
        for held in (fetcher, records):
            if held is not None:
                held.close()

    def records(self) -> Any:
        """The reader of the central MongoDB (``sync.ondemand.CentralRecords``), or None
        when no central store is configured."""
        stamp = config_stamp(self._service.paths)
        with self._fetcher_lock:
            if self._records[0] != stamp:
                # Upward, like the fetcher: listed in pyproject.toml's import-linter contract.
                from sync.ondemand import central_records

                self._records = (stamp, central_records(self._service))
            return self._records[1]

    def pull(self, datapoint_id: str) -> bool:
        """Read a datapoint this bench does not hold from the central store and keep it as
        a pulled row; False when no central store is configured or it has no such record."""
        records = self.records()
        return records is not None and bool(records.pull(self._service, datapoint_id))

    def fetcher(self) -> Any:
        """The fetcher of central-only files, or None without central object storage."""
        stamp = config_stamp(self._service.paths)
        with self._fetcher_lock:
            if self._fetcher is None or stamp != self._fetcher_stamp:
                # The sync package sits above the service: imported on first need, and the
                # one upward import, listed in pyproject.toml's import-linter contract.
                from sync.fetch import central_fetcher

                # A replaced fetcher is left to the garbage collector: another request may
                # still be downloading through it.
                self._fetcher = central_fetcher(self._service)
                self._fetcher_stamp = stamp
            return self._fetcher

    def fetch_lock(self, datapoint_id: str) -> threading.Lock:
        """One download per datapoint at a time; concurrent requests wait for it (striped
        locks: bounded memory, and rarely two datapoints share one)."""
        return self._fetching[hash(datapoint_id) % _FETCH_LOCK_STRIPES]
