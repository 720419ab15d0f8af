"""The bench's configuration file: one JSON document, one section per component.

``config.json`` in the config directory (see ``app.core.paths``) holds sections such as
``bench`` (identity), ``watch`` (watched-folder rules), ``central`` (the central store), and
``api`` (the local REST API). Each component validates its own section with its own model;
this module only reads and writes the file, atomically (temp file, fsync, rename), so a
crash never leaves half a configuration. Secrets never go here (the OS keyring holds them).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.atomic import atomic_writer
from app.core.errors import ValidationError
from app.core.paths import BenchPaths
from app.core.site import load_site, merge_site, site_config_file, strip_locked

log = logging.getLogger(__name__)

_lock = threading.Lock()


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValidationError(f"the {what} {path} cannot be read ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the {what} {path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "fix or remove it") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"the {what} {path} must hold a JSON object")
    return data


def _user_config(paths: BenchPaths) -> dict[str, Any]:
    return _read_json_object(paths.config_file, "configuration file")


def load_config(paths: BenchPaths) -> dict[str, Any]:
    """The whole configuration in effect: the facility's file (see ``app.core.site``) with
    this bench's ``config.json`` over it, except where the facility locked a setting."""
    return merge_site(load_site(), _user_config(paths))


def load_section(paths: BenchPaths, section: str) -> Any:
    """One section of the configuration, or ``None`` if it is not set."""
    return load_config(paths).get(section)


def save_section(paths: BenchPaths, section: str, value: Any) -> None:
    """Replace one section of this bench's ``config.json``, keeping the others; atomic.

    Settings the facility locked are not written (they always come from its file); a
    value that differs from the locked one is refused with ``LockedSettingError``."""
    site = load_site()
    value = strip_locked(site, section, value)
    with _lock:
        data = _user_config(paths)
        if value is None:
            data.pop(section, None)
        else:
            data[section] = value
        _write_atomically(paths.config_file, json.dumps(data, indent=2, ensure_ascii=False))


def _write_atomically(target: Path, text: str) -> None:
    with atomic_writer(target) as out:
        out.write(text.encode("utf-8"))


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def config_stamp(paths: BenchPaths) -> tuple[Any, ...]:
    """What changes when either configuration file (the bench's or the facility's) does."""
    return _stamp(paths.config_file), _stamp(site_config_file())


class ConfigFollower:
    """Calls ``on_change`` (on its own thread) whenever the configuration file changes.

    A running service follows edits made by the CLI, the desktop window or the facility's
    provisioning this way; polling the file's stamp every ``interval`` seconds costs
    nothing measurable and works on every platform and file system.
    """

    def __init__(self, paths: BenchPaths, on_change: Callable[[], None], *, name: str,
                 interval: float = 2.0) -> None:
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        seen = config_stamp(self.paths)
        self._thread = threading.Thread(target=self._follow, args=(seen,), name=self._name,
                                        daemon=True)
        self._thread.start()

    def _follow(self, seen: tuple[Any, ...]) -> None:
        while not self._stop.wait(self.interval):
            stamp = config_stamp(self.paths)
            if stamp == seen:
                continue
            seen = stamp
            try:
                self.on_change()
            except Exception:  # a half-edited file must not end the following
                log.exception("could not apply the edited configuration; keeping the old one")

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)
