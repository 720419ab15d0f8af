"""``app.DataClient`` for MADSci's test bodies: one JSON line in, one JSON line out.

The MADSci venv cannot import the bench (other pydantic, other dependencies), so the
adapter's ``BenchDataClient`` (``conftest_adapter.py``) forwards each DataClient call here,
run by the bench's python on a store of its own (``BENCHDATA_HOME``). Datapoints cross as
their JSON documents, as they would on the wire; bytes as base64.

Request: ``{"method": "...", "args": [...], "kwargs": {...}}``.
Answer: ``{"ok": <result>}`` or ``{"error": "<class>", "message": "..."}``.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from app import DataClient
from app.core.models import DataPoint

DATAPOINT = "__datapoint__"
BYTES = "__bytes__"


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if DATAPOINT in value:
            return DataPoint.discriminate(value[DATAPOINT])
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def encode(value: Any) -> Any:
    if isinstance(value, DataPoint):
        return {DATAPOINT: value.to_document()}
    if isinstance(value, (bytes, bytearray)):
        return {BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def serve() -> None:
    with DataClient() as client:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                method = getattr(client, request["method"])
                result = method(*decode(request["args"]), **decode(request["kwargs"]))
                answer: dict[str, Any] = {"ok": encode(result)}
            except Exception as exc:  # noqa: BLE001 - reported to the caller, who raises
                answer = {"error": type(exc).__name__, "message": str(exc)}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    serve()
