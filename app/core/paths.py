"""Where a bench keeps its data and configuration.

Default: the platform's per-user data and config directories (platformdirs); the data
directory can be moved from the desktop window's Settings, which writes a pointer
(``data-location.json``) into the platform config directory. The environment variable
``BENCHDATA_HOME`` moves both under one folder — tests, benchmarks and portable installs
use it; an explicit ``data_dir`` argument wins over all of these.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import platformdirs

APP_NAME = "BenchData"
HOME_ENV = "BENCHDATA_HOME"


@dataclass(frozen=True)
class BenchPaths:
    """The files and folders of one bench's local store."""

    data_dir: Path
    config_dir: Path
    #: The log folder when it is not ``<data_dir>/logs`` (the platform's log directory in
    #: the default layout; logs stay beside an explicit ``--data-dir`` or BENCHDATA_HOME).
    logs: Optional[Path] = None

    @property
    def database(self) -> Path:
        return self.data_dir / "store.sqlite3"

    @property
    def files(self) -> Path:
        return self.data_dir / "files"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    @property
    def log_dir(self) -> Path:
        return self.logs or self.data_dir / "logs"

    def private_dirs(self) -> list[Path]:
        """The bench's own folders (data, config, logs) with links resolved: nothing in
        them is ever captured as a file (they hold the store and secrets)."""
        return [Path(os.path.realpath(d)) for d in (self.data_dir, self.config_dir, self.log_dir)]

    def owns(self, path: os.PathLike[str] | str) -> bool:
        """True when ``path`` (links resolved) is one of :meth:`private_dirs` or inside one."""
        real = Path(os.path.realpath(path))
        return any(real == d or real.is_relative_to(d) for d in self.private_dirs())


def bench_paths(data_dir: Optional[os.PathLike[str] | str] = None) -> BenchPaths:
    """Resolve the paths: explicit ``data_dir``, else ``$BENCHDATA_HOME``, else the
    platform's directories (with the data directory chosen in Settings, if any)."""
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        return BenchPaths(data_dir=root, config_dir=root)
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser().resolve()
        return BenchPaths(data_dir=root / "data", config_dir=root / "config")
    config_dir = _platform_config_dir()
    return BenchPaths(data_dir=chosen_data_dir(config_dir) or _platform_data_dir(),
                      config_dir=config_dir,
                      logs=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)))


def _platform_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def _platform_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _pointer_file(config_dir: Path) -> Path:
    return config_dir / "data-location.json"


def chosen_data_dir(config_dir: Optional[Path] = None) -> Optional[Path]:
    """The data directory chosen in Settings, if one was (and the pointer is readable)."""
    pointer = _pointer_file(config_dir or _platform_config_dir())
    try:
        chosen = json.loads(pointer.read_text(encoding="utf-8")).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(chosen).expanduser() if isinstance(chosen, str) and chosen else None


def data_dir_is_overridden() -> bool:
    """True when ``$BENCHDATA_HOME`` decides the location (Settings cannot change it)."""
    return bool(os.environ.get(HOME_ENV))


def choose_data_dir(folder: Optional[os.PathLike[str] | str]) -> Path:
    """Use ``folder`` as the data directory from the next start (None: the default).

    Only the location changes: data already captured stays where it is (move it with
    ``benchdata backup`` and ``benchdata restore``). Returns the directory now in effect
    for the next start."""
    from app.core.atomic import atomic_writer  # paths is imported by everything; keep it light

    config_dir = _platform_config_dir()
    if folder is None:
        _pointer_file(config_dir).unlink(missing_ok=True)
        return _platform_data_dir()
    target = Path(folder).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    if not os.access(target, os.W_OK):
        from app.core.errors import ValidationError

        raise ValidationError(f"{target} is not writable; choose a folder this user can write to")
    with atomic_writer(_pointer_file(config_dir)) as out:
        out.write(json.dumps({"data_dir": str(target)}, indent=2).encode("utf-8"))
    return target
