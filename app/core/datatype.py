"""The three kinds of datapoint MADSci knows, without the models (and pydantic) around
them: code that only compares kinds, such as reading rows, needs nothing more."""

from __future__ import annotations

from enum import Enum


class DataPointTypeEnum(str, Enum):
    """The three kinds of datapoint MADSci knows."""

    JSON = "json"
    FILE = "file"
    OBJECT_STORAGE = "object_storage"

    @classmethod
    def _missing_(cls, value: object) -> "DataPointTypeEnum":
        # MADSci accepts its legacy name for JSON datapoints; so do we.
        if isinstance(value, str) and value.lower() == "data_value":
            return cls.JSON
        raise ValueError(
            f"unknown data_type {value!r}; use one of: json, file, object_storage"
        )
