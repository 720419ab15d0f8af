"""Export query results to CSV and Parquet, a page at a time (constant memory).

One row per datapoint with flat columns a spreadsheet or pandas can use: the MADSci
fields, every ownership id, the JSON value as JSON text, file facts, and custom metadata as
JSON text. Parquet needs pyarrow (a project dependency); rows are written in batches.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from app.core.errors import ValidationError
from app.core.ids import OWNERSHIP_FIELDS
from app.core.models import DataPoint
from app.core.timestamps import format_canonical

EXPORT_COLUMNS: Final[tuple[str, ...]] = (
    "datapoint_id",
    "label",
    "data_type",
    "data_timestamp",
    "data_timestamp_utc",
    # Each ownership id, then the name the bench keeps beside it (experiment_name …).
    *(column for field in OWNERSHIP_FIELDS for column in (field, f"{field[:-3]}_name")),
    "value",
    "path",
    "filename",
    "size_bytes",
    "content_type",
    "sha256",
    "bucket_name",
    "object_name",
    "url",
    "custom_metadata",
)
FORMATS: Final[tuple[str, ...]] = ("csv", "parquet")
_BATCH: Final[int] = 5000


def export_row(datapoint: DataPoint) -> dict[str, Any]:
    document = datapoint.to_document()
    ownership = document.get("ownership_info") or {}
    row: dict[str, Any] = {
        "datapoint_id": document["_id"],
        "label": document.get("label"),
        "data_type": document["data_type"],
        "data_timestamp": document["data_timestamp"],  # as sent (naive: bench local time)
        "data_timestamp_utc": format_canonical(datapoint.data_instant),
        "value": json.dumps(document["value"], ensure_ascii=False)
        if document["data_type"] == "json" else None,
        "custom_metadata": json.dumps(document.get("custom_metadata") or {}, ensure_ascii=False),
    }
    metadata = document.get("custom_metadata") or {}
    for field in OWNERSHIP_FIELDS:
        row[field] = ownership.get(field)
        # The store keeps <kind>_name beside every id whose name the bench knows, and an
        # ownership edit changes both together: the same name the window and CLI show.
        row[f"{field[:-3]}_name"] = metadata.get(f"{field[:-3]}_name") if row[field] else None
    for field in ("path", "filename", "size_bytes", "content_type", "sha256",
                  "bucket_name", "object_name", "url"):
        row[field] = document.get(field)
    return row


def format_for(path: Path, explicit: str | None = None) -> str:
    fmt = (explicit or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValidationError(
            f"cannot tell the export format of {path.name!r}; use --format csv or parquet"
        )
    return fmt


def export_datapoints(datapoints: Iterable[DataPoint], path: os.PathLike[str] | str,
                      fmt: str | None = None) -> int:
    """Write ``datapoints`` to ``path``; returns the number of rows. Atomic: the file
    appears complete or not at all."""
    target = Path(path).expanduser()
    fmt = format_for(target, fmt)
    temp = target.with_name(f".{target.name}.part")
    try:
        count = (_write_csv if fmt == "csv" else _write_parquet)(datapoints, temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def _write_csv(datapoints: Iterable[DataPoint], target: Path) -> int:
    count = 0
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS))
        writer.writeheader()
        for datapoint in datapoints:
            writer.writerow(export_row(datapoint))
            count += 1
    return count


def _batches(datapoints: Iterable[DataPoint]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for datapoint in datapoints:
        batch.append(export_row(datapoint))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(datapoints: Iterable[DataPoint], target: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(name, pa.int64() if name == "size_bytes" else pa.string()) for name in EXPORT_COLUMNS]
    )
    count = 0
    with pq.ParquetWriter(str(target), schema) as writer:
        for batch in _batches(datapoints):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count
