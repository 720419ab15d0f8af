"""Settings provisioned by the facility, some of them locked.

Facility staff set a bench up once, for every user and for the service, with one JSON file:
``$BENCHDATA_SITE_CONFIG`` if set, else ``config.json`` in the platform's site config
directory (``/etc/xdg/BenchData`` on Linux, ``C:\\ProgramData\\BenchData`` on Windows,
``/Library/Application Support/BenchData`` on macOS). It has the sections of a bench's own
``config.json`` (``central``, ``watch``, ``bench``, ``api``) plus a ``locked`` list::

    {
      "central": {"preset": "seaweedfs", "endpoint": "s3.lab.example:8333",
                  "bucket": "lab-data", "mongo_database": "madsci_data"},
      "watch": {"version": 1, "rules": [...]},
      "locked": ["central.endpoint", "central.bucket", "watch"]
    }

Its values are defaults that a bench's ``config.json`` may override, except the locked
ones: ``"section"`` locks a whole section, ``"section.key"`` one key of it. Locked values
always come from the facility's file; the window shows them greyed out and saving a
different value is refused (``LockedSettingError``). Secrets do not belong here (the file is
readable by every user): give them to the service through its environment
(``OBJECT_STORAGE_SECRET_KEY``, ``BENCHDATA_MONGO_URL``) or with ``benchdata sync configure``
run once as the service's user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import platformdirs

from app.core.errors import ValidationError

SITE_CONFIG_ENV = "BENCHDATA_SITE_CONFIG"
LOCKED_KEY = "locked"


class LockedSettingError(ValidationError):
    """A setting the facility locked cannot be changed on the bench."""


def site_config_file() -> Optional[Path]:
    """Where the facility's file is looked for (it need not exist); None if switched off
    with an empty ``BENCHDATA_SITE_CONFIG``."""
    chosen = os.environ.get(SITE_CONFIG_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen.strip() else None
    return Path(platformdirs.site_config_dir("BenchData", appauthor=False)) / "config.json"


def load_site() -> dict[str, Any]:
    """The facility's file (``{}`` when there is none), checked for shape."""
    path = site_config_file()
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValidationError(f"the facility's settings file {path} cannot be read "
                              f"({exc.strerror or exc}); ask the facility staff") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the facility's settings file {path} is not valid JSON "
                              f"(line {exc.lineno}: {exc.msg}); ask the facility staff") from exc
    locked = data.get(LOCKED_KEY, []) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(locked, list) \
            or not all(isinstance(item, str) for item in locked):
        raise ValidationError(f"the facility's settings file {path} must hold a JSON object "
                              f"whose \"{LOCKED_KEY}\" is a list of \"section\" or "
                              "\"section.key\" names")
    return data


def locked_settings(site: dict[str, Any]) -> set[str]:
    return set(site.get(LOCKED_KEY, []))


def is_locked(site: dict[str, Any], section: str, key: Optional[str] = None) -> bool:
    """Whether the facility locked ``section`` (whole), or ``section.key``."""
    locked = locked_settings(site)
    return section in locked or (key is not None and f"{section}.{key}" in locked)


def merge_site(site: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The configuration in effect: the facility's values, the bench's over them, the
    locked ones put back."""
    merged: dict[str, Any] = {k: v for k, v in site.items() if k != LOCKED_KEY}
    for section, value in user.items():
        default = merged.get(section)
        if is_locked(site, section):
            continue
        if isinstance(default, dict) and isinstance(value, dict):
            merged[section] = {**default, **{k: v for k, v in value.items()
                                             if not is_locked(site, section, k)}}
        else:
            merged[section] = value
    return merged


def strip_locked(site: dict[str, Any], section: str, value: Any) -> Any:
    """``value`` without its locked parts, for writing to the bench's own file.

    A value that differs from one the facility's file gives for a locked setting is
    refused. (Callers save whole sections, defaults included, so a locked key the file
    does not give a value for is dropped rather than compared: it keeps its default.)"""
    if not locked_settings(site):
        return value
    provided = site.get(section)
    whole = is_locked(site, section)
    if not isinstance(value, dict) or not isinstance(provided, dict):
        if whole and value is not None and provided is not None and value != provided:
            raise _locked_error(section)
        return None if whole else value
    kept: dict[str, Any] = {}
    for key, item in value.items():
        if not (whole or is_locked(site, section, key)):
            kept[key] = item
        elif key in provided and item != provided[key]:
            raise _locked_error(f"{section}.{key}")
    return None if whole else kept


def _locked_error(setting: str) -> LockedSettingError:
    return LockedSettingError(
        f"\"{setting}\" is set by the facility ({site_config_file()}) and cannot be changed "
        "on this bench; ask the facility staff")
