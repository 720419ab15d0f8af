"""What every ``benchdata`` command group shares: JSON output, ``KEY=VALUE`` options and
ending the process promptly.

The root command (``app/cli.py``) and the groups that live beside their component
(``sync/cli.py``, ``app/ingest/cli.py``, ``app/admin/cli.py``) import this small module, not
each other: a component's commands must not depend on the front end that mounts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Optional

import click


def emit_json(payload: Any, *, default: Optional[Callable[[Any], Any]] = None) -> None:
    """Print ``payload`` as indented JSON (non-ASCII kept); ``default`` as in json.dumps."""
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=default))


def parse_meta(pairs: Sequence[str]) -> dict[str, str]:
    """``--meta KEY=VALUE`` options as a dict (a clear usage error otherwise)."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        metadata[key.strip()] = value
    return metadata


#: Set by a command whose process may end without waiting for library threads at exit.
_exit_promptly = False


def exit_promptly_when_done() -> None:
    """Let ``app.cli.main`` end the process as soon as the command returns.

    pymongo's monitor threads sleep in 0.5 s steps and the interpreter joins them at exit,
    which adds about half a second to every one-shot ``benchdata sync --once`` (measured:
    1.4 s against 0.25 s for an S3-only process). By the time ``main`` sees the command's
    exit, its context has closed the store (every commit was durable when it returned);
    only output buffers and log handlers are left to flush, and ``main`` flushes them.
    """
    global _exit_promptly
    _exit_promptly = True


def take_exit_promptly() -> bool:
    """Whether the command asked to exit promptly; resets the request."""
    global _exit_promptly
    asked, _exit_promptly = _exit_promptly, False
    return asked
