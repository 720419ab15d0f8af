"""The headless capture service: ``benchdata run`` (and the GUI hosts the same).

It opens the bench service and starts its components — the folder watcher, the local
REST API, the sync engine — each built by a factory that returns ``None`` when the
component is not configured or switched off. It stops them in reverse order on SIGINT or
SIGTERM, so an instrument PC without anyone logged in can run it under systemd or a
Windows service.

A full disk does not stop it: the store then opens read-only (``LocalStore.read_only_reason``)
and a component that cannot start without writing waits. The service says so (a warning in
the log, ``degraded`` in the lock file the window and ``doctor`` read, ``/health``), checks
for free space every few seconds, and starts what waited once there is room again.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Optional

from app.core.component import Component, RunOptions
from app.core.errors import DiskFullError
from app.service import BenchService

log = logging.getLogger(__name__)

#: How often a service degraded by a full disk checks whether space is back.
RESUME_INTERVAL_S = 2.0


__all__ = ["Component", "ComponentFactory", "HeadlessRunner", "RunOptions",
           "component_factories"]

ComponentFactory = Callable[[BenchService, RunOptions], Optional[Component]]


def _api(service: BenchService, options: RunOptions) -> Optional[Component]:
    from app.api.component import make_component

    return make_component(service, options)


def _watch(service: BenchService, options: RunOptions) -> Optional[Component]:
    from app.ingest.component import make_component

    return make_component(service, options)


def _sync(service: BenchService, options: RunOptions) -> Optional[Component]:
    from sync.component import make_component

    return make_component(service, options)


def _verify(service: BenchService, options: RunOptions) -> Optional[Component]:
    from sync.verify import make_component

    return make_component(service, options)


def _extract(service: BenchService, options: RunOptions) -> Optional[Component]:
    from app.extract.component import make_component

    return make_component(service, options)


def component_factories() -> list[ComponentFactory]:
    """Every component's factory, in start order. Each imports its component when called
    (plain imports, which import-linter follows), so that a component's dependencies load
    only when the service runs, and a component that cannot even be imported fails alone
    (the window reports it and starts the others)."""
    return [_api, _watch, _sync, _verify, _extract]


def factory_name(factory: ComponentFactory) -> str:
    """The component a factory makes, for messages: "api", "watch", "sync"."""
    module = getattr(factory, "__module__", "") or ""
    if module == __name__:
        return str(getattr(factory, "__name__", "")).lstrip("_") or repr(factory)
    return module.removesuffix(".component").rsplit(".", 1)[-1] or repr(factory)


class HeadlessRunner:
    """Starts and stops the configured components around one BenchService."""

    def __init__(self, service: BenchService, options: RunOptions,
                 factories: Optional[list[ComponentFactory]] = None) -> None:
        self.service = service
        self.options = options
        self._factories = factories if factories is not None else component_factories()
        self.components: list[Component] = []
        #: Factories that built a component (the others were off, failed or are waiting).
        self._built: set[ComponentFactory] = set()
        self._started = False
        #: Factories of components waiting for disk space (see the module docstring).
        self._waiting: list[ComponentFactory] = []
        self._resumer: Optional[threading.Thread] = None
        self._stop_resuming = threading.Event()
        #: Starting (after a full disk) and stopping components never overlap.
        self._lifecycle = threading.Lock()
        self._stopped = threading.Event()
        #: The store's app.admin.lock.ServiceLock, held from start() to stop(); a caller
        #: that took it already (before opening the store) hands it over here.
        self.lock: Any = None

    def start(self) -> None:
        # One service per store: fail at once, naming the holder, before any component.
        from app.admin.lock import ServiceLock

        if self.lock is None:
            self.lock = ServiceLock(self.service.paths)
        self.lock.acquire()
        with self._lifecycle:  # a reload() from another thread waits for the start
            self._started = True
            for factory in self._factories:
                self._start_component(factory)
        reason = self.degraded
        if reason is not None:
            log.warning("%s. The service runs in a read-only, degraded mode: reads and "
                        "/health answer, captures are refused (REST 507) and resume by "
                        "themselves once space is freed", reason)
            self._stop_resuming = threading.Event()
            self._resumer = threading.Thread(target=self._resume_when_space_returns,
                                             args=(self._stop_resuming,),
                                             name="benchdata-disk-resume", daemon=True)
            self._resumer.start()
        self.publish()

    def _start_component(self, factory: ComponentFactory) -> None:
        """Build and start one component; one that needs disk space it lacks waits."""
        try:
            component = factory(self.service, self.options)
            if component is None:
                return
            component.start()
        except DiskFullError as exc:
            log.warning("%s waits for free disk space: %s", factory_name(factory), exc)
            self._waiting.append(factory)
            return
        self.components.append(component)
        self._built.add(factory)
        log.info("started %s", component.name)

    def component(self, name: str) -> Optional[Component]:
        """The running component called ``name`` ("watch", "sync", "rest-api"), or None."""
        return next((c for c in list(self.components) if c.name == name), None)

    def reload(self, name: str) -> Optional[Component]:
        """Apply saved settings to component ``name`` now, instead of when it notices them.

        A running component re-reads its settings (``apply_settings_edits``). When none by
        that name runs, every factory that built nothing so far is asked again, and what
        it builds now starts (a component switched off stays off: its factory still
        returns None). Returns the running component called ``name``, or None. Safe from
        any thread; it waits for a ``start`` in progress and does nothing before ``start``
        or after ``stop``.
        """
        with self._lifecycle:
            if not self._started or self._stopped.is_set():
                return None  # start() reads the saved settings itself; after stop: nothing
            current = self.component(name)
            if current is not None:
                apply_edits = getattr(current, "apply_settings_edits", None)
                if apply_edits is not None:
                    apply_edits()
                return current
            for factory in self._factories:
                if factory not in self._built and factory not in self._waiting:
                    self._start_component(factory)
            self.publish()
            return self.component(name)

    @property
    def degraded(self) -> Optional[str]:
        """Why the service runs degraded (its data disk is full), or None."""
        reason = self.service.store.read_only_reason
        if reason is None and self._waiting:
            names = ", ".join(factory_name(factory) for factory in self._waiting)
            reason = f"the data disk is full: {names} cannot start"
        return reason

    def _resume_when_space_returns(self, stop: threading.Event) -> None:
        while not stop.wait(RESUME_INTERVAL_S):
            with self._lifecycle:
                if stop.is_set():
                    return
                if not self.service.store.try_writable():
                    continue
                waiting, self._waiting = self._waiting, []
                for factory in waiting:
                    try:
                        self._start_component(factory)
                    except Exception:  # not the disk: the service goes on without it
                        log.exception("starting %s failed", factory_name(factory))
                if self.degraded is None:
                    log.warning("the data disk has room again: capture resumed")
                    self.publish()
                    return

    def publish(self) -> None:
        """Tell other processes (a window attaching to this service) what runs here."""
        if self.lock is None:
            return
        addresses = {c.name: c.address for c in self.components if getattr(c, "address", None)}
        self.lock.publish(components=[c.name for c in self.components], addresses=addresses,
                          degraded=self.degraded)

    def stop(self) -> None:
        """Stop components in reverse order; one failing to stop does not block the rest."""
        self._stop_resuming.set()  # a resumer waiting for disk space starts nothing more
        with self._lifecycle:
            self._stop_components()

    def _stop_components(self) -> None:
        while self.components:
            component = self.components.pop()
            try:
                component.stop()
                log.info("stopped %s", component.name)
            except Exception:
                log.exception("stopping %s failed", component.name)
        self._waiting.clear()
        if self.lock is not None:
            self.lock.release()
        self._stopped.set()

    def request_stop(self, *_args: object) -> None:
        self._stopped.set()

    def run_until_stopped(self) -> None:
        """Run until SIGINT/SIGTERM (or ``request_stop``), then stop cleanly."""
        previous = {sig: signal.signal(sig, self.request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            names = ", ".join(c.name for c in self.components) or "no components"
            log.info("Bench Data Manager service running (%s); stop with Ctrl+C", names)
            while not self._stopped.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
