"""Where a bench keeps its data and configuration.

Default: the platform's per-user data and config directories (platformdirs). The
environment variable ``BENCHDATA_HOME`` moves both under one folder — tests, benchmarks and
portable installs use it; an explicit ``data_dir`` argument wins over both.
"""

from __future__ import annotations

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
        return self.data_dir / "logs"


def bench_paths(data_dir: Optional[os.PathLike[str] | str] = None) -> BenchPaths:
    """Resolve the paths: explicit ``data_dir``, else ``$BENCHDATA_HOME``, else platformdirs."""
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        return BenchPaths(data_dir=root, config_dir=root)
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser().resolve()
        return BenchPaths(data_dir=root / "data", config_dir=root / "config")
    return BenchPaths(
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
    )
