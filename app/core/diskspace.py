"""Free space on the data directory's disk, and when it counts as low.

The threshold is the ``disk`` section of the configuration (``{"disk": {"low_space_mb":
1024}}``, editable in ``config.json`` or the facility's file). ``/health`` and ``benchdata
doctor`` warn below it, before the disk is full; once it *is* full, every write is refused
with ``DiskFullError`` (REST 507) and the store is read-only until space is freed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from app.core.config import load_section
from app.core.paths import BenchPaths

log = logging.getLogger(__name__)

SECTION = "disk"
#: The default warning threshold: 1 GiB free.
DEFAULT_LOW_SPACE_MB = 1024


class DiskSettings(BaseModel):
    """The ``disk`` section of the configuration."""

    model_config = ConfigDict(extra="forbid")

    low_space_mb: int = Field(DEFAULT_LOW_SPACE_MB, ge=0, description=(
        "Warn (in /health and doctor) when less than this many MiB are free on the data "
        "directory's disk."))


def load_disk_settings(paths: BenchPaths) -> DiskSettings:
    """The ``disk`` section; the default when it is unset or invalid (logged)."""
    try:
        return DiskSettings.model_validate(load_section(paths, SECTION) or {})
    except Exception as exc:  # noqa: BLE001 - a warning threshold must not stop anything
        log.warning("ignoring the invalid %r settings (%s); using the defaults", SECTION, exc)
        return DiskSettings()


@dataclass(frozen=True)
class DiskSpace:
    """Free and total bytes on the data disk, against the warning threshold."""

    free_bytes: int
    total_bytes: int
    low_space_bytes: int

    @property
    def full(self) -> bool:
        return self.free_bytes == 0

    @property
    def low(self) -> bool:
        return self.free_bytes < self.low_space_bytes

    def describe(self) -> str:
        text = f"{_gib(self.free_bytes)} free of {_gib(self.total_bytes)} on the data disk"
        if self.full:
            return text + ": the disk is full, captures are refused until space is freed"
        if self.low:
            return text + (f", below the warning threshold of {_gib(self.low_space_bytes)}: "
                           "free space before captures start failing")
        return text


def _gib(size: int) -> str:
    return f"{size / 1024 ** 3:.2f} GiB"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def disk_space(paths: BenchPaths, settings: Optional[DiskSettings] = None) -> DiskSpace:
    """Measure the data directory's disk now (OSError if it cannot be measured)."""
    settings = settings or load_disk_settings(paths)
    usage = shutil.disk_usage(_nearest_existing(paths.data_dir))
    return DiskSpace(free_bytes=usage.free, total_bytes=usage.total,
                     low_space_bytes=settings.low_space_mb * 1024 * 1024)
