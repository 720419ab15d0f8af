"""Bench Data Manager: capture lab data on the bench, offline first, synced to MADSci.

The public Python surface::

    from app import DataClient, ValueDataPoint, FileDataPoint, OwnershipInfo
"""

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
