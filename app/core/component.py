"""What a long-running component (the REST API, the folder watcher, sync) is, and the
options ``benchdata run`` hands to each.

It lives below every component so that they can name it without importing the runner that
starts them (``app/runner.py`` imports the components; see DEVELOPING.md's layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol


class Component(Protocol):
    """A long-running part of the service. ``stop`` is prompt and idempotent.

    A component whose settings can change while it runs also has
    ``apply_settings_edits()``, which re-reads them (``HeadlessRunner.reload``).
    """

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
