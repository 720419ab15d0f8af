"""How the REST API refuses a request: one mapping from error to status and body,
shared by the framework's exception handlers and the fast ingest route."""

from __future__ import annotations

import logging
from typing import Any, Final, Optional

from fastapi import FastAPI, Request
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.api.multipart import MultipartError
from app.api.wire import json_response
from app.core.errors import (
    BenchDataError,
    CaptureError,
    CentralNotConfiguredError,
    CentralUnavailableError,
    ConflictError,
    DiskFullError,
    FileDamagedError,
    FileUnavailableError,
    NotFoundError,
    QueryError,
    QueryTimeoutError,
    SourceChangedError,
    StoreError,
    ValidationError,
    ValueTooLargeError,
    describe_validation_error,
)
from app.core.ids import is_ulid

log = logging.getLogger(__name__)

class ApiError(Exception):
    """A request we refuse, with its status and a sentence saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({**_error_body(message), **extra}, status=status)


def _status_for(exc: BenchDataError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, CentralNotConfiguredError):
        return 409  # this bench's settings, not the request, stand in the way
    if isinstance(exc, CentralUnavailableError):
        return 424  # the central store failed the request; not this server's fault
    if isinstance(exc, ValueTooLargeError):
        return 413
    if isinstance(exc, QueryTimeoutError):
        return 408
    if isinstance(exc, QueryError):
        return 400
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, DiskFullError):
        return 507
    if isinstance(exc, FileDamagedError):
        return 502  # the central copy did not verify: an upstream fault, not the client's
    if isinstance(exc, FileUnavailableError):
        return 503
    if isinstance(exc, SourceChangedError):
        return 400  # an upload that was shorter or longer than announced
    if isinstance(exc, (StoreError, CaptureError)):
        return 503
    return 500


def error_reply(exc: BaseException) -> Optional[tuple[int, dict[str, Any]]]:
    """The status and body for a refused request; None for an unexpected error (a 500).

    One mapping for the framework's exception handlers and the fast ingest route, so both
    answer the same bad input alike."""
    if isinstance(exc, ApiError):
        return exc.status, _error_body(exc.message)
    if isinstance(exc, BenchDataError):
        status = _status_for(exc)
        if status == 502:  # a central copy that did not verify: someone must look
            log.error("request failed: %s", exc)
        elif status >= 500:  # a full disk or an unreachable store: expected, and said
            log.warning("request refused (%d): %s", status, exc)
        return status, _error_body(str(exc))
    if isinstance(exc, PydanticValidationError):
        return 422, _error_body(f"invalid datapoint: {describe_validation_error(exc)}")
    if isinstance(exc, MultipartError):
        return 400, _error_body(str(exc))
    return None


def _error_body(message: str) -> dict[str, Any]:
    # ``detail`` as FastAPI answers, ``message`` as MADSci's own 404 does.
    return {"detail": message, "message": message}


def install_error_handlers(app: FastAPI) -> None:
    async def _refused(_request: Request, exc: Exception) -> Response:
        reply = error_reply(exc)
        assert reply is not None  # registered only for the classes error_reply maps
        return json_response(reply[1], status=reply[0])

    for refused in (ApiError, BenchDataError, PydanticValidationError, MultipartError):
        app.add_exception_handler(refused, _refused)

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(_request: Request, _exc: ClientDisconnect) -> Response:
        # Nobody is listening; the capture was abandoned and cleaned up.
        log.info("client disconnected before its request body was complete")
        return Response(status_code=400)


#: Exactly what FastAPI (and so MADSci) answers when the form field is absent.
MISSING_DATAPOINT_FIELD: Final[dict[str, Any]] = {"detail": [{
    "type": "missing", "loc": ["body", "datapoint"], "msg": "Field required", "input": None}]}


def missing_datapoint_field() -> Response:
    return json_response(MISSING_DATAPOINT_FIELD, status=422)


def not_found(datapoint_id: str) -> Response:
    message = f"Datapoint with id {datapoint_id} not found."
    if not is_ulid(datapoint_id):
        return error_response(404, message, hint="datapoint ids are ULIDs: 26 characters "
                                                  "of 0-9 A-Z without I L O U")
    return json_response({"message": message, "detail": message}, status=404)
