"""Datapoints as MADSci 0.8.1 documents on the wire (``_id``, ``path`` at the captured
blob), and the JSON encoding of every answer."""

from __future__ import annotations

import json
from typing import Any, Final, Optional

from starlette.responses import Response

from app.core.errors import ValidationError
from app.core.ids import OWNERSHIP_FIELDS
from app.core.models import (
    DataPoint,
    DataPointTypeEnum,
    FileDataPoint,
    OwnershipInfo,
    ValueDataPoint,
)
from app.core.timestamps import madsci_text
from app.service import BenchService

try:  # optional: a faster JSON encoder for answers
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

#: A value datapoint's fields in the order pydantic dumps them. ``value_document``
#: builds the same document directly, and is used only while the model has exactly these.
_VALUE_FIELDS: Final[tuple[str, ...]] = (
    "label", "ownership_info", "data_type", "datapoint_id", "data_timestamp",
    "custom_metadata", "value")
_DIRECT_VALUE_DOCUMENT: Final[bool] = tuple(ValueDataPoint.model_fields) == _VALUE_FIELDS \
    and tuple(OwnershipInfo.model_fields) == OWNERSHIP_FIELDS


def value_document(datapoint: ValueDataPoint) -> dict[str, Any]:
    """``datapoint.to_document()``, built directly.

    pydantic's JSON-mode dump calls back into Python for the timestamp and ownership
    serializers and inspects every value to render it: a sixth of the CPU of a small
    POST. Every datapoint the API answers with came from JSON — a request body or the
    store's strict JSON columns — so its value and extra fields are JSON already and
    are passed through. tests/api/test_api_fast_ingest.py checks both agree, key order too.
    """
    fields = datapoint.__dict__
    ownership = fields["ownership_info"]
    document: dict[str, Any] = {
        "label": fields["label"],
        "ownership_info": None if ownership is None else {
            key: value for key, value in ownership.__dict__.items() if value is not None},
        "data_type": DataPointTypeEnum.JSON.value,
        "_id": fields["datapoint_id"],
        "data_timestamp": madsci_text(fields["data_timestamp"]),
        "custom_metadata": dict(fields["custom_metadata"]),
        "value": fields["value"],
    }
    if datapoint.model_extra:
        document.update(datapoint.model_extra)
    return document


def wire_document(service: BenchService, datapoint: DataPoint) -> dict[str, Any]:
    """The document a MADSci client expects (``_id``), with ``path`` pointing at the
    captured blob for files this bench holds (see the module docstring)."""
    if _DIRECT_VALUE_DOCUMENT and type(datapoint) is ValueDataPoint:
        return _without_default_metadata(value_document(datapoint))
    document = _without_default_metadata(datapoint.to_document())
    sha256 = getattr(datapoint, "sha256", None)
    if isinstance(datapoint, FileDataPoint) and sha256:
        try:
            blob_path = service.files.path_for(sha256)
        except ValidationError:
            return document
        document["source_path"] = document.get("path")
        document["path"] = str(blob_path)
    return document


def _without_default_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """MADSci 0.8.1 has ``custom_metadata`` only on object_storage datapoints. An empty
    one elsewhere is our model's default, not something the client sent: leave it out,
    so that a client comparing the answer with what it sent finds them equal."""
    if document.get("custom_metadata") == {} and \
            document.get("data_type") != DataPointTypeEnum.OBJECT_STORAGE.value:
        del document["custom_metadata"]
    return document


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson when installed (a tenth of the cost); the standard
    library otherwise, and for what orjson refuses (integers beyond 64 bits, non-text
    keys, lone surrogates). Documents we answer with were checked as strict JSON when
    stored, so orjson's NaN-as-null never applies."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def json_response(value: Any, status: int = 200,
                  headers: Optional[dict[str, str]] = None) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json",
                    headers=headers)
