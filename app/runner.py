"""The headless capture service: ``benchdata run`` (and the GUI hosts the same).

It opens the bench service and starts its components — the folder watcher, the local
REST API, the sync engine — each built by a factory that returns ``None`` when the
component is not configured or switched off. It stops them in reverse order on SIGINT or
SIGTERM, so an instrument PC without anyone logged in can run it under systemd or a
Windows service.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from app.service import BenchService

log = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running part of the service. ``stop`` is prompt and idempotent."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class RunOptions:
    """What ``benchdata run`` was asked for; components read the parts they own."""

    watch: bool = True
    api: bool = True
    api_host: Optional[str] = None
    api_port: Optional[int] = None
    sync: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


ComponentFactory = Callable[[BenchService, RunOptions], Optional[Component]]

#: "module:function" of every component factory, in start order. Imported lazily so that
#: a component's dependencies load only when the service runs.
COMPONENT_FACTORIES: list[str] = [
    "app.api.component:make_component",
    "app.ingest.component:make_component",
    "sync.component:make_component",
]


def _load_factory(spec: str) -> ComponentFactory:
    module_name, _, attribute = spec.partition(":")
    factory: ComponentFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


class HeadlessRunner:
    """Starts and stops the configured components around one BenchService."""

    def __init__(self, service: BenchService, options: RunOptions,
                 factories: Optional[list[ComponentFactory]] = None) -> None:
        self.service = service
        self.options = options
        self._factories = factories if factories is not None else [
            _load_factory(spec) for spec in COMPONENT_FACTORIES
        ]
        self.components: list[Component] = []
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
        for factory in self._factories:
            component = factory(self.service, self.options)
            if component is None:
                continue
            component.start()
            self.components.append(component)
            log.info("started %s", component.name)
        self.publish()

    def publish(self) -> None:
        """Tell other processes (a window attaching to this service) what runs here."""
        if self.lock is None:
            return
        addresses = {c.name: c.address for c in self.components if getattr(c, "address", None)}
        self.lock.publish(components=[c.name for c in self.components], addresses=addresses)

    def stop(self) -> None:
        """Stop components in reverse order; one failing to stop does not block the rest."""
        while self.components:
            component = self.components.pop()
            try:
                component.stop()
                log.info("stopped %s", component.name)
            except Exception:
                log.exception("stopping %s failed", component.name)
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
