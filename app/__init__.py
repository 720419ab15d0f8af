"""Bench Data Manager: capture lab data on the bench, offline first, synced to MADSci.

The public Python surface::

    from app import DataClient, ValueDataPoint, FileDataPoint, OwnershipInfo

The names are imported on first use (PEP 562): importing an ``app.*`` module, or starting
the ``benchdata`` command, does not load the client and what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers and readers
    from app.client import DataClient
    from app.core.errors import (
        BenchDataError,
        CaptureError,
        ConflictError,
        NotFoundError,
        QueryError,
        ValidationError,
    )
    from app.core.ids import name_to_id, new_ulid
    from app.core.models import (
        DataPoint,
        DataPointTypeEnum,
        FileDataPoint,
        ObjectStorageDataPoint,
        OwnershipInfo,
        ValueDataPoint,
    )

__version__ = "0.1.0"

__all__ = [
    "BenchDataError",
    "CaptureError",
    "ConflictError",
    "DataClient",
    "DataPoint",
    "DataPointTypeEnum",
    "FileDataPoint",
    "NotFoundError",
    "ObjectStorageDataPoint",
    "OwnershipInfo",
    "QueryError",
    "ValidationError",
    "ValueDataPoint",
    "name_to_id",
    "new_ulid",
]

#: Public name -> the module that defines it (imported on first use: ``import app.core.x``
#: and ``benchdata --version`` must not load the client, the store and pydantic).
_LAZY: dict[str, str] = {
    "DataClient": "app.client",
    **dict.fromkeys(("BenchDataError", "CaptureError", "ConflictError", "NotFoundError",
                     "QueryError", "ValidationError"), "app.core.errors"),
    **dict.fromkeys(("name_to_id", "new_ulid"), "app.core.ids"),
    **dict.fromkeys(("DataPoint", "DataPointTypeEnum", "FileDataPoint",
                     "ObjectStorageDataPoint", "OwnershipInfo", "ValueDataPoint"),
                    "app.core.models"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
