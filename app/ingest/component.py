"""The folder watcher as a component of ``benchdata run`` (and of the GUI).

``make_component`` is listed in ``app.runner.component_factories``. The component
finishes interrupted captures (``Ledger.recover``) before any worker starts, then runs one
:class:`~app.ingest.watcher.RuleWorker` per enabled rule. Listeners receive every
:class:`~app.ingest.watcher.IngestEvent` on the worker's thread (the GUI hops to its own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from app.core.config import ConfigFollower
from app.ingest.health import HealthBoard, HealthPublisher
from app.ingest.ledger import Ledger
from app.ingest.rules import WatchRule, load_rules
from app.ingest.watcher import IngestEvent, Listener, RuleStatus, RuleWorker, WorkerOptions
from app.service import BenchService

log = logging.getLogger(__name__)


class IngestComponent:
    """Watches every enabled rule's folder until stopped."""

    name = "watch"

    #: How often the headless service looks for rule edits made with ``benchdata watch``.
    CONFIG_POLL_SECONDS = 2.0

    def __init__(self, service: BenchService, rules: Iterable[WatchRule], *,
                 options: Optional[WorkerOptions] = None, follow_config: bool = False) -> None:
        self.service = service
        self._config_follower = ConfigFollower(
            service.paths, self.apply_settings_edits, name="benchdata-watch-config",
            interval=self.CONFIG_POLL_SECONDS) if follow_config else None
        self.ledger = Ledger(service.store)
        self._options = options or WorkerOptions()
        self._rules = [rule for rule in rules if rule.enabled]
        self._workers: dict[str, RuleWorker] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._started = False
        self._health: Optional[HealthPublisher] = None
        self.health_board = HealthBoard(service.store)

    @property
    def staging_dir(self) -> Path:
        return self.service.paths.data_dir / "ingest" / "staging"

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, event: IngestEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a listener must not break a worker
                log.exception("ingest listener %r failed", listener)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        finished, dropped = self.ledger.recover()
        if finished or dropped:
            log.info("finished %d interrupted capture(s); %d will be captured again",
                     finished, dropped)
        self._clear_staging()
        self._started = True
        for rule in self._rules:
            self._start_worker(rule)
        self._health = HealthPublisher(self.health_board, self.status,
                                       lambda rule_id: self.rescan(rule_id))
        self._health.start()
        log.info("watching %d folder(s): %s", len(self._workers),
                 ", ".join(str(rule.root) for rule in self._rules) or "none")
        if self._config_follower is not None:
            self._config_follower.start()

    def apply_settings_edits(self) -> None:
        """Apply rules added, edited, paused or removed (CLI, window) while running."""
        self.reload(load_rules(self.service.paths))
        log.info("watch rules changed; now watching %d folder(s)", len(self._rules))

    def stop(self) -> None:
        """Stop every worker (all asked at once, then joined); idempotent."""
        if self._config_follower is not None:
            self._config_follower.stop()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.join(30.0)
        if self._health is not None:
            self._health.stop()
            self._health = None
            try:  # readers see "not running" at once instead of after the heartbeat ages
                self.health_board.publish([])
            except Exception:  # noqa: BLE001 - a full or closed store: staleness says it
                log.debug("clearing watched-folder health failed", exc_info=True)
        self._started = False

    def reload(self, rules: Iterable[WatchRule]) -> None:
        """Apply edited rules: unchanged workers keep running, others restart."""
        wanted = {rule.id: rule for rule in rules if rule.enabled}
        self._rules = list(wanted.values())
        if not self._started:
            return
        with self._lock:
            current = dict(self._workers)
        for rule_id, worker in current.items():
            if wanted.get(rule_id) != worker.rule:
                worker.stop()
                with self._lock:
                    self._workers.pop(rule_id, None)
        for rule_id, rule in wanted.items():
            if rule_id not in self._workers:
                self._start_worker(rule)

    def _start_worker(self, rule: WatchRule) -> None:
        worker = RuleWorker(self.service, self.ledger, rule, emit=self._emit,
                            staging_dir=self.staging_dir, options=self._options)
        with self._lock:
            self._workers[rule.id] = worker
        worker.start()

    def _clear_staging(self) -> None:
        staging = self.staging_dir
        if not staging.is_dir():
            return
        for leftover in staging.glob("*.part"):
            try:
                leftover.unlink()
            except OSError:
                log.warning("could not remove leftover archive %s", leftover)

    # -- inspection --------------------------------------------------------------------

    def status(self) -> list[RuleStatus]:
        with self._lock:
            workers = list(self._workers.values())
        return [worker.status() for worker in workers]

    def worker(self, rule_id: str) -> RuleWorker:
        return self._workers[rule_id]

    def rescan(self, rule_id: Optional[str] = None) -> None:
        with self._lock:
            workers = [w for i, w in self._workers.items() if rule_id in (None, i)]
        for worker in workers:
            worker.request_scan()


def make_component(service: BenchService, options: Any) -> Optional[IngestComponent]:
    """The watcher for ``benchdata run``; None when switched off. It follows rule edits
    made with ``benchdata watch`` while it runs, so it starts even with no rules yet."""
    if not getattr(options, "watch", True):
        return None
    rules = [rule for rule in load_rules(service.paths) if rule.enabled]
    if not rules:
        log.info("no watched folders are configured yet (add one with: benchdata watch add "
                 "DIR); rules added while running are picked up")
    return IngestComponent(service, rules, follow_config=True)
