"""The extraction worker as a component of ``benchdata run`` (and of the window when it
hosts capture): takes datapoints from ``app.core.extractqueue`` one at a time.

Capture never waits for it: the queue entry is written by a trigger with the captured row,
and this thread only reads the queue and writes edits (``app/extract/worker.py``).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from datetime import timedelta
from typing import Any, Optional

from app.core import extractqueue
from app.extract.process import ExtractorProcess
from app.core.errors import NotFoundError
from app.core.timestamps import format_canonical, utc_now
from app.extract.api import ERROR_KEY
from app.extract.worker import ExtractSettings, edit_for, extract_fields, load_settings, scratch_dir
from app.service import BenchService

log = logging.getLogger(__name__)

#: How long the worker waits after an unexpected failure (a full disk, say) before retrying.
FAILURE_BACKOFF_SECONDS = 5.0
BATCH = 20
#: A batch's results are written after at most this long (plus one file's extraction).
BATCH_SECONDS = 1.0
#: Extraction waits until no file has been captured for this long …
YIELD_QUIET_SECONDS = 0.3
#: … but no longer than this per batch.
YIELD_MAX_SECONDS = 5.0


class ExtractComponent:
    name = "extract"

    def __init__(self, service: BenchService, settings: ExtractSettings) -> None:
        self.service = service
        self.settings = settings
        self.process = ExtractorProcess(timeout_seconds=settings.timeout_seconds,
                                        memory_mb=settings.memory_mb)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is not None:
            return
        shutil.rmtree(scratch_dir(self.service), ignore_errors=True)  # a crash's leftovers
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="benchdata-extract",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (a capture in this process just queued a file)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.process.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.process.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self._one_batch()
            except Exception:
                log.exception("extraction failed; retrying in %g s", FAILURE_BACKOFF_SECONDS)
                self._stop.wait(FAILURE_BACKOFF_SECONDS)
                continue
            if not worked:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()

    def _one_batch(self) -> bool:
        """Extract up to BATCH queued files, then record all their results and take them
        off the queue: two commits per batch, so captures rarely wait for this writer."""
        store = self.service.store
        ids = extractqueue.pending(store, BATCH, self.settings.max_attempts)
        if not ids:
            return False
        extractqueue.attempted(store, ids)
        edits: dict[str, tuple[dict[str, str], list[str]]] = {}
        done: list[str] = []
        yield_until = time.monotonic() + YIELD_MAX_SECONDS
        started: Optional[float] = None
        for datapoint_id in ids:
            self._yield_to_captures(yield_until)
            if self._stop.is_set():
                break
            if started is None:
                started = time.monotonic()
            elif time.monotonic() - started > BATCH_SECONDS:
                break  # results show within about BATCH_SECONDS, however slow the files
            edit = self._extract(datapoint_id)
            if self._stop.is_set():
                break  # perhaps killed by stop(): tried again at the next start
            if edit is not None:
                edits[datapoint_id] = edit
            done.append(datapoint_id)
        if edits:
            self.service.update_metadata_many(edits)
        untried = ids[len(done):]
        if done or untried:
            extractqueue.finish(store, done, untried)
        return True

    def _yield_to_captures(self, until: float) -> None:
        """Wait while files are being captured (in any process), so extraction's CPU and
        commits do not slow a burst of captures down; never past ``until``, so a steady
        stream of captures delays extraction but cannot stop it."""
        while not self._stop.is_set() and time.monotonic() < until:
            quiet_since = format_canonical(utc_now() - timedelta(seconds=YIELD_QUIET_SECONDS))
            if not extractqueue.queued_since(self.service.store, quiet_since):
                return
            self._stop.wait(YIELD_QUIET_SECONDS / 3)

    def _extract(self, datapoint_id: str) -> Optional[tuple[dict[str, str], list[str]]]:
        """The metadata edit recording this datapoint's extraction, if any."""
        try:
            datapoint = self.service.get(datapoint_id)
        except NotFoundError:
            return None
        fields = extract_fields(self.service, self.process, datapoint)
        if ERROR_KEY in fields and not self._stop.is_set():
            log.info("extraction of %s failed: %s", datapoint_id, fields[ERROR_KEY])
        return edit_for(datapoint, fields)

def make_component(service: BenchService, options: Any) -> Optional[ExtractComponent]:
    """The extraction worker; None when ``extract.enabled`` is false in config.json."""
    settings = load_settings(service)
    if not settings.enabled or not getattr(options, "extract", True):
        return None
    return ExtractComponent(service, settings)
