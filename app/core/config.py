"""The bench's configuration file: one JSON document, one section per component.

``config.json`` in the config directory (see ``app.core.paths``) holds sections such as
``bench`` (identity), ``watch`` (watched-folder rules), ``central`` (the central store), and
``api`` (the local REST API). Each component validates its own section with its own model;
this module only reads and writes the file, atomically (temp file, fsync, rename), so a
crash never leaves half a configuration. Secrets never go here (the OS keyring holds them).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from app.core.atomic import atomic_writer
from app.core.errors import ValidationError
from app.core.paths import BenchPaths

_lock = threading.Lock()


def load_config(paths: BenchPaths) -> dict[str, Any]:
    """The whole configuration (``{}`` when there is none yet)."""
    try:
        text = paths.config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the configuration file {paths.config_file} is not valid JSON "
            f"(line {exc.lineno}: {exc.msg}); fix or remove it"
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError(f"the configuration file {paths.config_file} must hold a JSON object")
    return data


def load_section(paths: BenchPaths, section: str) -> Any:
    """One section of the configuration, or ``None`` if it is not set."""
    return load_config(paths).get(section)


def save_section(paths: BenchPaths, section: str, value: Any) -> None:
    """Replace one section, keeping the others; atomic on disk."""
    with _lock:
        data = load_config(paths)
        if value is None:
            data.pop(section, None)
        else:
            data[section] = value
        _write_atomically(paths.config_file, json.dumps(data, indent=2, ensure_ascii=False))


def _write_atomically(target: Path, text: str) -> None:
    with atomic_writer(target) as out:
        out.write(text.encode("utf-8"))
