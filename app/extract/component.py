"""The extraction worker as a component of ``benchdata run`` (and of the window when it
hosts capture): takes datapoints from ``app.core.extractqueue`` one at a time.

Capture never waits for it: the queue entry is written by a trigger with the captured row,
and this thread only reads the queue and writes edits (``app/extract/worker.py``).
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any, Optional

from app.core import extractqueue
from app.extract.process import ExtractorProcess
from app.core.errors import NotFoundError
from app.extract.api import ERROR_KEY
from app.extract.worker import (ExtractSettings, apply_fields, extract_fields, load_settings,
                                scratch_dir)
from app.service import BenchService

log = logging.getLogger(__name__)

#: How long the worker waits after an unexpected failure (a full disk, say) before retrying.
FAILURE_BACKOFF_SECONDS = 5.0
BATCH = 20


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
        store = self.service.store
        ids = extractqueue.pending(store, BATCH, self.settings.max_attempts)
        if not ids:
            return False
        extractqueue.attempted(store, ids)
        done: list[str] = []
        try:
            for datapoint_id in ids:
                if self._stop.is_set():
                    break
                self._extract(datapoint_id)
                if self._stop.is_set():
                    break  # perhaps killed by stop(): tried again at the next start
                done.append(datapoint_id)
        finally:
            if done:
                extractqueue.finish(store, done)
        return True

    def _extract(self, datapoint_id: str) -> None:
        try:
            datapoint = self.service.get(datapoint_id)
        except NotFoundError:
            return
        fields = extract_fields(self.service, self.process, datapoint)
        if self._stop.is_set():
            return  # the answer is "stopped", not the file's
        if ERROR_KEY in fields:
            log.info("extraction of %s failed: %s", datapoint_id, fields[ERROR_KEY])
        try:
            apply_fields(self.service, datapoint, fields)
        except NotFoundError:  # deleted meanwhile
            pass


def make_component(service: BenchService, options: Any) -> Optional[ExtractComponent]:
    """The extraction worker; None when ``extract.enabled`` is false in config.json."""
    settings = load_settings(service)
    if not settings.enabled or not getattr(options, "extract", True):
        return None
    return ExtractComponent(service, settings)
