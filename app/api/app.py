"""The local REST API: MADSci 0.8.1's Data Manager routes, served from the bench's store.

Same paths, form fields, ``_id`` documents, list shapes and status codes as MADSci 0.8.1
(``shared/madsci/wire_protocol.md``), so ``madsci.client.DataClient`` and plain-HTTP
scripts work unchanged. Where MADSci is unsafe or fragile we differ, on purpose:

* Files go into the content-addressed file store; a client's id, filename or ``path``
  never decides where a file is written or which file is read. ``/value`` serves only
  blobs this bench captured, fetched or verified for that datapoint (its custody record,
  never merely a SHA-256 a client names); a file only the central store holds is fetched
  and verified first (``BenchService.file_blob``). HTTP range support.
* A ``file`` datapoint must bring its file (MADSci would store the client's ``path`` and
  later serve whatever file that names); a ``json`` one must not.
* POST is idempotent: the same datapoint (same id, same content) again is a no-op that
  answers 200, so the DataClient's retry after a timeout is safe; the same id with other
  content is 409.
* Selectors run through the bench's query language (bound parameters only; ``$where`` and
  other unsupported operators are a 400 naming the supported ones); lists and queries
  stream in pages, in constant memory, newest first.
* Bad input is a 4xx with a sentence saying what to fix, never a 500.
* Uploads stream from the socket into the file store in one pass (hashed on the way),
  in constant memory; all store and file work runs on worker threads, so one large
  upload never stalls other requests.

``path`` on the wire: for a file the bench holds, the response's ``path`` is the captured
blob in the file store (read-only, content-addressed), and the path the file was captured
from is ``source_path``. MADSci's DataClient reads ``path`` directly when it can (on the
bench itself), so it reads exactly the captured bytes rather than a source file that may
have changed since; elsewhere it falls back to ``/value``.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any, Final, Optional
from urllib.parse import parse_qsl

import anyio.from_thread
from fastapi import FastAPI, Query, Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.api.group_commit import GroupCommitter
from app.api.guard import ApiGuard
from app.api.ingest import URLENCODED, DatapointIngest, Handler
from app.api.multipart import MultipartError, MultipartReader, PartStream, boundary_of
from app.core.errors import (
    BenchDataError,
    CaptureError,
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
from app.core.filestore import BlobInfo
from app.core.ids import OWNERSHIP_FIELDS, is_ulid
from app.core.jsonvalue import MAX_VALUE_BYTES, check_json_value
from app.core.models import (
    DataPoint,
    DataPointTypeEnum,
    FileDataPoint,
    OwnershipInfo,
    ValueDataPoint,
)
from app.core.timestamps import madsci_text
from app.service import BenchService, guess_content_type

try:  # optional: a faster JSON encoder for answers
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: The MADSci Data Manager API version whose wire protocol this API follows.
MADSCI_API_VERSION: Final[str] = "0.8.1"
#: The JSON text of one datapoint (the store caps a JSON value at 15 MiB; room for the rest).
MAX_DATAPOINT_BYTES: Final[int] = 20 * 1024 * 1024
#: An urlencoded POST body (percent-encoding can triple the JSON's size).
MAX_FORM_BODY_BYTES: Final[int] = 3 * MAX_DATAPOINT_BYTES + 4096
#: A query selector.
MAX_SELECTOR_BYTES: Final[int] = 1024 * 1024
#: After a refused upload, read (and discard) at most this much more of the body so the
#: client sees our answer; beyond it the connection is closed instead.
DRAIN_LIMIT_BYTES: Final[int] = 64 * 1024 * 1024
#: Rows per page when a list or query streams; lists up to this size are one response.
PAGE_SIZE: Final[int] = 1000
#: Bytes of JSON gathered before a streamed chunk is sent.
STREAM_CHUNK_BYTES: Final[int] = 256 * 1024
#: Longest file name kept (most file systems allow 255 bytes).
MAX_FILENAME_CHARS: Final[int] = 200

_FILE_FACTS: Final[tuple[str, ...]] = ("filename", "size_bytes", "sha256", "content_type")


# -- errors ----------------------------------------------------------------------------


class ApiError(Exception):
    """A request we refuse, with its status and a sentence saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_response(status: int, message: str, **extra: Any) -> Response:
    return _json({**_error_body(message), **extra}, status=status)


def _status_for(exc: BenchDataError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
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
        if status >= 500:
            log.error("request failed: %s", exc)
        return status, _error_body(str(exc))
    if isinstance(exc, PydanticValidationError):
        return 422, _error_body(f"invalid datapoint: {describe_validation_error(exc)}")
    if isinstance(exc, MultipartError):
        return 400, _error_body(str(exc))
    return None


def _error_body(message: str) -> dict[str, Any]:
    # ``detail`` as FastAPI answers, ``message`` as MADSci's own 404 does.
    return {"detail": message, "message": message}


def _install_error_handlers(app: FastAPI) -> None:
    async def _refused(_request: Request, exc: Exception) -> Response:
        reply = error_reply(exc)
        assert reply is not None  # registered only for the classes error_reply maps
        return _json(reply[1], status=reply[0])

    for refused in (ApiError, BenchDataError, PydanticValidationError, MultipartError):
        app.add_exception_handler(refused, _refused)

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(_request: Request, _exc: ClientDisconnect) -> Response:
        # Nobody is listening; the capture was abandoned and cleaned up.
        log.info("client disconnected before its request body was complete")
        return Response(status_code=400)


# -- documents on the wire -------------------------------------------------------------


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


def _dumps(value: Any) -> bytes:
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


def _json(value: Any, status: int = 200, headers: Optional[dict[str, str]] = None) -> Response:
    return Response(_dumps(value), status_code=status, media_type="application/json",
                    headers=headers)


# -- parsing a submitted datapoint -----------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ApiError(400, f"the datapoint is not strict JSON: {name} is not a JSON number; "
                        f"use null or a number")


_DECODERS: dict[Callable[[str], Any], json.JSONDecoder] = {}


def _loads(text: str | bytes, reject_constant: Callable[[str], Any]) -> Any:
    """``json.loads(text, parse_constant=reject_constant)``, reusing one decoder per
    ``reject_constant`` for text (``json.loads`` builds a new one each call when given
    options; the standard library shares its own default decoder between threads too).
    Bytes and BOM-prefixed text keep ``json.loads``' own handling."""
    if isinstance(text, str) and not text.startswith("\ufeff"):
        decoder = _DECODERS.get(reject_constant)
        if decoder is None:
            decoder = _DECODERS[reject_constant] = json.JSONDecoder(
                parse_constant=reject_constant)
        return decoder.decode(text)
    return json.loads(text, parse_constant=reject_constant)


def _load_json(text: str | bytes, what: str, *, reject_constant: Callable[[str], Any],
               too_deep: Callable[[], Exception]) -> Any:
    """Parse a request's JSON, turning each way it can be malformed into a 4xx."""
    try:
        parsed = _loads(text, reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno})") from None
    except UnicodeDecodeError:
        raise ApiError(400, f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:  # Python's guard against quadratic int parsing
        if "integer string conversion" not in str(exc):
            raise
        raise ApiError(400, f"{what} has an integer of more than "
                            f"{sys.get_int_max_str_digits()} digits; send such a number "
                            f"as a string") from None
    _refuse_lone_surrogates(text, parsed, what)
    return parsed


def _refuse_lone_surrogates(text: str | bytes, parsed: Any, what: str) -> None:
    """JSON may escape half of a UTF-16 pair (``"\\ud800"``): that parses to a string no
    UTF-8 store or client can hold. Only texts with such an escape are checked (by
    encoding them once); UTF-8 bytes themselves cannot carry a surrogate."""
    if isinstance(text, bytes):
        escaped = b"\\ud" in text or b"\\uD" in text
    else:
        escaped = "\\ud" in text or "\\uD" in text
    if not escaped:
        return
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        raise ApiError(400, f"{what} has a lone UTF-16 surrogate \\u{code:04x}, which is "
                            f"not Unicode text; escape characters beyond U+FFFF as a "
                            f"surrogate pair, or send them as UTF-8") from None


def parse_datapoint_text(text: str | bytes) -> dict[str, Any]:
    """The ``datapoint`` form field as a JSON object (raises ApiError)."""
    if len(text) > MAX_DATAPOINT_BYTES:
        raise ApiError(413, f"the datapoint field is {len(text)} bytes; at most "
                            f"{MAX_DATAPOINT_BYTES} are accepted: store large data as a file")
    document = _load_json(text, "the datapoint field", reject_constant=_reject_constant,
                          too_deep=lambda: ApiError(422, "the datapoint is nested too deeply"))
    if not isinstance(document, dict):
        raise ApiError(422, "the datapoint field must be a JSON object such as "
                            '{"data_type": "json", "label": "temp", "value": 23.5}, '
                            f"not a JSON {type(document).__name__}")
    return document


def _check_header(document: dict[str, Any]) -> DataPointTypeEnum:
    """Check what can be checked before any file byte is read: type and id."""
    if "data_type" not in document:
        raise ApiError(422, "the datapoint needs a data_type: json, file or object_storage")
    try:
        kind = DataPointTypeEnum(document["data_type"])
    except (ValueError, TypeError):
        raise ApiError(422, f"unknown data_type {document['data_type']!r}; use one of: "
                            f"json, file, object_storage") from None
    for key in ("_id", "datapoint_id"):
        if key in document and not is_ulid(document[key]):
            raise ApiError(422, f"{key} must be a ULID (26 characters of 0-9 A-Z without "
                                f"I L O U), got {document[key]!r}; omit it to get a new one")
    return kind


def _restore_source_path(document: dict[str, Any]) -> None:
    """A document we served (``path`` = blob, ``source_path`` = capture path) sent back
    unchanged is the same datapoint: store the capture path again."""
    source_path = document.pop("source_path", None)
    if isinstance(source_path, str):
        document["path"] = source_path


def safe_filename(name: Optional[str]) -> str:
    """The client's file name as metadata only: last path segment, no control characters."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if text in ("", ".", ".."):
        return "upload"
    return text[:MAX_FILENAME_CHARS]


def _validate(document: dict[str, Any]) -> DataPoint:
    try:
        datapoint = DataPoint.discriminate(document)
    except PydanticValidationError as exc:
        raise ApiError(422, f"invalid datapoint: {describe_validation_error(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, f"invalid datapoint: {exc}") from None
    if datapoint.model_extra:
        # Extra fields ride along to MongoDB as they are: they must be strict JSON too
        # (a number such as 1e400 parses as infinity, which the store cannot write).
        check_json_value(datapoint.model_extra, "datapoint")
    return datapoint


def datapoint_without_file(document: dict[str, Any]) -> DataPoint:
    """A submitted datapoint that came without a file part."""
    kind = _check_header(document)
    if kind == DataPointTypeEnum.FILE:
        raise ApiError(422, "a file datapoint needs its file: send it as a multipart part "
                            "named 'files' beside the 'datapoint' field (MADSci's DataClient "
                            "does this); the server never reads files named by 'path'")
    return _validate(document)


class Upload:
    """A file part stored in the file store, waiting for its datapoint."""

    def __init__(self, blob: BlobInfo, filename: str, content_type: Optional[str]) -> None:
        self.blob = blob
        self.filename = filename
        self.content_type = content_type


def _upload_content_type(part_type: Optional[str], filename: str) -> str:
    if part_type and part_type.split(";")[0].strip().lower() != "application/octet-stream":
        return part_type
    return guess_content_type(filename)


def check_file_document(document: dict[str, Any], filename: str) -> None:
    """Before the file's bytes are read: refuse what can never become a file datapoint."""
    kind = _check_header(document)
    if kind != DataPointTypeEnum.FILE:
        raise ApiError(422, f"a {kind.value} datapoint cannot carry an uploaded file; "
                            f"use data_type 'file' for files")
    _restore_source_path(document)
    probe = dict(document)
    probe.setdefault("path", filename)
    for fact in _FILE_FACTS:
        probe.pop(fact, None)
    _validate(probe)


def datapoint_with_upload(document: dict[str, Any], upload: Upload) -> DataPoint:
    """The file datapoint for an uploaded file: file facts come from the bytes received,
    never from the client (a client's own size or SHA-256 must match them)."""
    check_file_document(document, upload.filename)
    claimed_size = document.get("size_bytes")
    if isinstance(claimed_size, int) and not isinstance(claimed_size, bool) \
            and claimed_size != upload.blob.size_bytes:
        raise ApiError(400, f"the datapoint says size_bytes={claimed_size} but "
                            f"{upload.blob.size_bytes} bytes were uploaded; send it again")
    claimed_sha = document.get("sha256")
    if isinstance(claimed_sha, str) and claimed_sha.lower() != upload.blob.sha256:
        raise ApiError(400, f"the datapoint says sha256={claimed_sha} but the uploaded bytes "
                            f"hash to {upload.blob.sha256}; send it again")
    full = dict(document)
    full.setdefault("path", upload.filename)
    full.update(filename=upload.filename, size_bytes=upload.blob.size_bytes,
                sha256=upload.blob.sha256,
                content_type=_upload_content_type(upload.content_type, upload.filename))
    return _validate(full)


# -- request bodies --------------------------------------------------------------------


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The whole (small) body, refusing more than ``limit`` bytes with a 413."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"{what} is {int(declared)} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"{what} is over {limit} bytes, the most accepted")
        chunks.append(chunk)
    return b"".join(chunks)


class BodySource:
    """The request body, pulled chunk by chunk from a worker thread.

    The handler runs on a worker thread (store and file work must not block the event
    loop); each chunk is fetched from the event loop through ``anyio.from_thread``.
    uvicorn stops reading the socket while we do not ask, so memory stays flat.
    """

    def __init__(self, request: Request) -> None:
        self._chunks = request.stream().__aiter__()
        self._done = False

    async def _next(self) -> bytes:
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                return b""
            if chunk:
                return chunk

    def next_chunk(self) -> bytes:
        if self._done:
            return b""
        chunk = anyio.from_thread.run(self._next)
        if not chunk:
            self._done = True
        return chunk


#: Exactly what FastAPI (and so MADSci) answers when the form field is absent.
MISSING_DATAPOINT_FIELD: Final[dict[str, Any]] = {"detail": [{
    "type": "missing", "loc": ["body", "datapoint"], "msg": "Field required", "input": None}]}


def _missing_datapoint_field() -> Response:
    return _json(MISSING_DATAPOINT_FIELD, status=422)


# -- the app ---------------------------------------------------------------------------


class ApiSettings(BaseModel):
    """What ``GET /settings`` reports (nothing secret: never the token or data folders)."""

    manager_type: str = "data_manager"
    manager_name: str = "Bench Data Manager"
    manager_description: str = "Local-first, MADSci-compatible Data Manager on this bench"
    madsci_api_version: str = MADSCI_API_VERSION
    server_url: Optional[str] = None
    token_required: bool = False
    database_name: str = "madsci_data"
    collection_name: str = "datapoints"
    max_datapoint_bytes: int = MAX_DATAPOINT_BYTES
    max_selector_bytes: int = MAX_SELECTOR_BYTES


_DATAPOINT_FORM: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["datapoint"],
    "properties": {
        "datapoint": {"type": "string", "title": "Datapoint",
                      "description": "The datapoint as JSON text, e.g. "
                                     '{"data_type":"json","label":"temp","value":23.5}'},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "title": "Files",
                  "description": "The file of a 'file' datapoint (exactly one)."},
    },
}


#: What each refusal means on the wire; routes declare theirs in the OpenAPI document.
_ERROR_MEANINGS: Final[dict[int, str]] = {
    400: "Malformed request: the body is not valid JSON, UTF-8 text or multipart; text has "
         "a lone UTF-16 surrogate (e.g. \\ud800); an integer has more than "
         f"{sys.get_int_max_str_digits()} digits; or a selector, sort or cursor is "
         "not supported (the message names it).",
    401: "This API has a token and the request did not bring it "
         "(Authorization: Bearer <token>, or the token as the URL's password).",
    403: "Refused by the guard: a Host that is not loopback on a loopback-only API, or a "
         "web page's Origin that is not allowed.",
    404: "No datapoint has this id, or its file is not in this bench's file store.",
    408: "The query ran longer than the server's time limit; narrow the selector or page "
         "through the answer with limit.",
    409: "A different datapoint already has this id (the same datapoint again is a 200).",
    413: f"Over a limit: a datapoint field of at most {MAX_DATAPOINT_BYTES} bytes (a JSON "
         f"value of at most {MAX_VALUE_BYTES} bytes), an urlencoded form of at most "
         f"{MAX_FORM_BODY_BYTES} bytes, a selector of at most {MAX_SELECTOR_BYTES} bytes.",
    422: "The datapoint (or a parameter) does not validate: the message names the field.",
    503: "The local store cannot take writes right now; try again.",
    507: "The bench's disk is full: nothing was stored.",
}
_ERROR_BODY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object", "title": "Refusal",
    "properties": {
        "detail": {"description": "What to fix: a sentence (for a malformed query "
                                  "parameter, FastAPI's list of field errors)"},
        "message": {"type": "string", "description": "The same sentence (as MADSci)"}}}


def _error_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` for a route that may refuse with ``statuses`` (the
    guard's 401/403 apply to every route)."""
    return {status: {"description": _ERROR_MEANINGS[status],
                     "content": {"application/json": {"schema": _ERROR_BODY_SCHEMA}}}
            for status in sorted({401, 403, *statuses})}


def create_app(service: BenchService, *, token: Optional[str] = None,
               loopback_only: bool = False,
               allowed_origins: tuple[str, ...] = (),
               server_url: Optional[str] = None,
               fast_ingest: bool = True) -> "BenchApi":
    """The FastAPI app serving MADSci's Data Manager API from ``service``.

    ``token``: required on every request when set. ``loopback_only``: refuse Host headers
    that are not loopback names (the server sets it when bound to loopback).
    ``allowed_origins``: browser origins let through (default none). ``fast_ingest``:
    serve small ``POST /datapoint`` bodies on the raw ASGI path (off only to compare the
    two paths in tests).
    """
    app = BenchApi(
        title="Bench Data Manager — MADSci-compatible Data Manager API",
        version=__version__,
        description=(
            "MADSci 0.8.1 Data Manager routes served from this bench's local store: "
            "captures work offline and sync to the central store in the background. "
            "See docs/rest-api.md."
        ),
    )
    app.state.service = service
    committer = GroupCommitter(service)
    app.state.committer = committer
    settings = ApiSettings(server_url=server_url, token_required=token is not None)
    _install_error_handlers(app)

    @app.post("/datapoint", summary="Create a datapoint",
              responses=_error_answers(400, 409, 413, 422, 503, 507), openapi_extra={
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": _DATAPOINT_FORM},
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["datapoint"],
                "properties": {"datapoint": _DATAPOINT_FORM["properties"]["datapoint"]}}},
        }}})
    async def create_datapoint(request: Request) -> Response:
        """Store a datapoint (``datapoint`` form field, JSON) and, for a ``file``
        datapoint, its file (one ``files`` part). Resending the same datapoint is a
        no-op; the same id with other content is 409."""
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            try:
                boundary = boundary_of(content_type)
            except MultipartError as exc:
                raise ApiError(400, str(exc)) from None
            source = BodySource(request)
            document = await run_in_threadpool(submit_multipart, service, source, boundary,
                                               committer)
        elif kind == "application/x-www-form-urlencoded":
            body = await read_body(request, MAX_FORM_BODY_BYTES, "the form")
            document = await run_in_threadpool(submit_urlencoded, service, body, committer)
        elif kind == "application/json":
            body = await read_body(request, MAX_DATAPOINT_BYTES, "the datapoint")
            document = await run_in_threadpool(submit_text, service, body, committer)
        else:
            return _missing_datapoint_field()
        if document is None:
            return _missing_datapoint_field()
        return _json(document)

    @app.get("/datapoint/{datapoint_id}", summary="Get a datapoint",
             responses=_error_answers(404))
    def get_datapoint(datapoint_id: str) -> Response:
        """The datapoint's document (``_id``, label, type, timestamp, value or file facts)."""
        try:
            datapoint = service.get(datapoint_id)
        except NotFoundError:
            return _not_found(datapoint_id)
        document = wire_document(service, datapoint)
        if datapoint.data_type != DataPointTypeEnum.JSON:
            # An extra field (MADSci's models keep extras): the file's chain of custody.
            document["custody"] = service.custody(datapoint.datapoint_id)
        return _json(document)

    @app.get("/datapoint/{datapoint_id}/value", summary="Get a datapoint's value",
             responses=_error_answers(404))
    def get_datapoint_value(datapoint_id: str) -> Response:
        """The JSON value, or the file's bytes with its content type (range requests
        supported)."""
        try:
            datapoint = service.get(datapoint_id)
        except NotFoundError:
            return _not_found(datapoint_id)
        if isinstance(datapoint, ValueDataPoint):
            return _json(datapoint.value)
        return _file_response(service, datapoint_id)

    @app.get("/datapoints", summary="Get the newest datapoints",
             responses=_error_answers(408, 422))
    def get_datapoints(number: int = Query(100, ge=0, description=(
            "How many, newest first; 0 means all."))) -> Response:
        """An object keyed by id, newest first by data_timestamp."""
        if 0 < number <= PAGE_SIZE:
            return _json(_keyed(service, service.latest(number)))
        return _stream_keyed(service, service.iter_query(None), number or None)

    @app.post("/datapoints/query", summary="Query datapoints",
              responses=_error_answers(400, 408, 413, 422), openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "A MongoDB-style selector, e.g. "
            '{"label": "temp", "value.t": {"$gt": 20}}'}}}}})
    async def query_datapoints(
        request: Request,
        limit: Optional[int] = Query(None, ge=1, description=(
            f"Page size, 1 to {PAGE_SIZE}: at most this many, with the next page's cursor "
            "in the X-Next-Cursor header while more may follow. Default: every match, "
            "streamed (as MADSci).")),
        cursor: Optional[str] = Query(None, description="X-Next-Cursor of the previous page."),
        sort: Optional[str] = Query(None, description=(
            'Sort keys, e.g. "-data_timestamp" (default, newest first) or "label,-value.t".')),
    ) -> Response:
        """Datapoints matching a selector, as an object keyed by id, newest first."""
        body = await read_body(request, MAX_SELECTOR_BYTES, "the selector")
        return await run_in_threadpool(run_query, service, body, limit, cursor, sort)

    @app.get("/health", summary="Health", responses=_error_answers())
    def health() -> Response:
        """Whether the store answers, and how many datapoints it holds."""
        report: dict[str, Any] = {"healthy": True,
                                  "description": "Bench Data Manager is running normally",
                                  "version": __version__,
                                  "madsci_api_version": MADSCI_API_VERSION,
                                  "db_connected": True, "storage_accessible": True,
                                  "total_datapoints": None}
        try:
            report["total_datapoints"] = service.count()
        except Exception as exc:  # a health check reports, it does not fail
            report.update(healthy=False, db_connected=False,
                          description=f"the local store does not answer: {exc}")
        if not os.access(service.files.root, os.W_OK):
            report.update(healthy=False, storage_accessible=False,
                          description="the file store is not writable")
        report_disk_space(service, report)
        return _json(report)

    @app.get("/settings", summary="Settings", responses=_error_answers(422))
    def get_settings(include_defaults: bool = True, include_schema: bool = False) -> Response:
        """This API's settings (as MADSci's ``{"settings": ...}``; never secrets)."""
        payload: dict[str, Any] = {
            "settings": settings.model_dump(mode="json", exclude_defaults=not include_defaults)}
        if include_schema:
            payload["schema"] = ApiSettings.model_json_schema()
            payload["schema_title"] = ApiSettings.__name__
        return _json(payload)

    app.add_middleware(ApiGuard, token=token, loopback_only=loopback_only,
                       allowed_origins=allowed_origins)
    if fast_ingest:
        # The hot route skips the framework but not the guard.
        app.fast_ingest = ApiGuard(
            DatapointIngest(_small_submission_handler(service, committer),
                            fallback=app.framework_call),
            token=token, loopback_only=loopback_only, allowed_origins=allowed_origins)
    return app


class BenchApi(FastAPI):
    """The FastAPI app, with ``POST /datapoint`` answered by ``fast_ingest`` when set
    (see ``app.api.ingest``); every other request takes the framework's way."""

    fast_ingest: Optional[ASGIApp] = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_ingest is not None and scope["type"] == "http" \
                and scope["path"] == "/datapoint" and scope["method"] == "POST":
            await self.fast_ingest(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def framework_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """This request through FastAPI's middleware and routing, as any other."""
        await super().__call__(scope, receive, send)


def _small_submission_handler(service: BenchService, committer: GroupCommitter) -> Handler:
    """The fast route's handler: the urlencoded or JSON body in, (status, JSON) out,
    with the same parsing, checks and error answers as ``create_datapoint``."""

    async def handle(kind: str, body: bytes) -> tuple[int, bytes]:
        try:
            text = datapoint_field(body) if kind == URLENCODED else body
            if text is None:
                return 422, _dumps(MISSING_DATAPOINT_FIELD)
            datapoint = datapoint_without_file(parse_datapoint_text(text))
            stored = await committer.submit_async(datapoint)
            return 200, _dumps(wire_document(service, stored))
        except Exception as exc:
            reply = error_reply(exc)
            if reply is None:
                raise
            return reply[0], _dumps(reply[1])

    return handle


def report_disk_space(service: BenchService, report: dict[str, Any]) -> None:
    """Add the data disk's free space to a health report: a low disk is said before it
    is full (healthy still), a full one or a read-only store makes the service unhealthy."""
    from app.core.diskspace import disk_space

    try:
        space = disk_space(service.paths)
    except OSError:
        return
    report.update(disk_free_bytes=space.free_bytes, disk_low=space.low,
                  read_only=service.store.read_only_reason is not None)
    if service.store.read_only_reason is not None:
        report.update(healthy=False, description=service.store.read_only_reason)
    elif space.full:
        report.update(healthy=False, description=space.describe())
    elif space.low and report["healthy"]:
        report["description"] = f"Bench Data Manager is running, but {space.describe()}"


def _not_found(datapoint_id: str) -> Response:
    message = f"Datapoint with id {datapoint_id} not found."
    if not is_ulid(datapoint_id):
        return _error_response(404, message, hint="datapoint ids are ULIDs: 26 characters "
                                                  "of 0-9 A-Z without I L O U")
    return _json({"message": message, "detail": message}, status=404)


# -- handlers that run on worker threads -----------------------------------------------


def submit_text(service: BenchService, text: str | bytes,
                committer: Optional[GroupCommitter] = None) -> dict[str, Any]:
    document = parse_datapoint_text(text)
    datapoint = datapoint_without_file(document)
    stored = committer.submit(datapoint) if committer else service.submit(datapoint)
    return wire_document(service, stored)


def datapoint_field(body: bytes) -> Optional[str]:
    """The (last) ``datapoint`` field of an urlencoded form; None if there is none."""
    only = _sole_datapoint_field(body)
    if only is not None:
        return only
    try:
        fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                           encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "the form is not UTF-8 text") from None
    values = [value for name, value in fields if name == "datapoint"]
    return values[-1] if values else None


_SOLE_FIELD_PREFIX: Final[bytes] = b"datapoint="


def _sole_datapoint_field(body: bytes) -> Optional[str]:
    """The common form — ``datapoint=<percent-encoded JSON>`` and nothing else, all
    ASCII, as MADSci's DataClient sends it — decoded in C rather than by urllib's
    per-escape Python loop (a sixth of the cost). None for anything else, including
    malformed escapes or bad UTF-8, which the general parser then handles (and refuses)
    exactly as before.

    ``%XX`` becomes ``\\xXX`` for the ``unicode_escape`` codec (backslashes escaped
    first, so no other escape can arise); that yields one character per byte, which
    latin-1 turns back into the bytes that are then read as UTF-8.
    """
    if not body.startswith(_SOLE_FIELD_PREFIX) or b"&" in body or not body.isascii():
        return None
    escaped = body[len(_SOLE_FIELD_PREFIX):].replace(b"+", b" ").replace(
        b"\\", b"\\\\").replace(b"%", b"\\x")
    try:
        return codecs.decode(escaped, "unicode_escape").encode("latin-1").decode("utf-8")
    except UnicodeError:  # a malformed escape or bad UTF-8: the general parser decides
        return None


def submit_urlencoded(service: BenchService, body: bytes,
                      committer: Optional[GroupCommitter] = None) -> Optional[dict[str, Any]]:
    text = datapoint_field(body)
    if text is None:
        return None
    return submit_text(service, text, committer)


def _read_field(reader: MultipartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := reader.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the datapoint field is over {limit} bytes; store large "
                                f"data as a file")
        chunks.append(chunk)
    return b"".join(chunks)


def submit_multipart(service: BenchService, source: BodySource, boundary: bytes,
                     committer: Optional[GroupCommitter] = None) -> Optional[dict[str, Any]]:
    """Parse the form as it arrives; a file part streams straight into the file store.

    The datapoint is committed only once the whole body was read and checked, so a
    request is stored entirely or not at all. A blob nothing refers to is removed again.
    """
    reader = MultipartReader(source.next_chunk, boundary)
    document: Optional[dict[str, Any]] = None
    upload: Optional[Upload] = None
    committed = False
    try:
        try:
            while (part := reader.next_part()) is not None:
                if part.name == "datapoint" and part.filename is None:
                    document = parse_datapoint_text(_read_field(reader, MAX_DATAPOINT_BYTES))
                elif part.name == "files":
                    if upload is not None:
                        raise ApiError(422, "send one file per datapoint (one 'files' part)")
                    filename = safe_filename(part.filename)
                    if document is not None:  # refuse before reading a byte of it
                        check_file_document(document, filename)
                    stream = PartStream(reader, name=f"the upload {filename!r}")
                    blob = service.files.put_stream(stream, hold=True)  # type: ignore[arg-type]
                    upload = Upload(blob, filename, part.content_type)
                # other fields are ignored, as FastAPI's form handling does
        except (ApiError, BenchDataError, MultipartError):
            reader.drain(DRAIN_LIMIT_BYTES)
            raise
        if document is None:
            return None
        if upload is None:
            datapoint = datapoint_without_file(document)
        else:
            datapoint = datapoint_with_upload(document, upload)
        stored = committer.submit(datapoint) if committer else service.submit(datapoint)
        committed = True
        return wire_document(service, stored)
    finally:
        if upload is not None:
            service.settle_blobs([upload.blob.sha256], committed)


def _keyed(service: BenchService, datapoints: list[DataPoint]) -> dict[str, Any]:
    return {dp.datapoint_id: wire_document(service, dp) for dp in datapoints}


def _json_object_chunks(service: BenchService, datapoints: Iterator[DataPoint],
                        limit: Optional[int]) -> Iterator[bytes]:
    """``{"<id>": {...}, ...}`` in chunks of about STREAM_CHUNK_BYTES."""
    parts: list[bytes] = [b"{"]
    size = 1
    first = True
    for count, datapoint in enumerate(datapoints):
        if limit is not None and count >= limit:
            break
        piece = (b"" if first else b",") + _dumps(datapoint.datapoint_id) + b":" + \
            _dumps(wire_document(service, datapoint))
        first = False
        parts.append(piece)
        size += len(piece)
        if size >= STREAM_CHUNK_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"}")
    yield b"".join(parts)


def _stream_keyed(service: BenchService, datapoints: Iterator[DataPoint],
                  limit: Optional[int], headers: Optional[dict[str, str]] = None) -> Response:
    return StreamingResponse(_json_object_chunks(service, datapoints, limit),
                             media_type="application/json", headers=headers)


def run_query(service: BenchService, body: bytes, limit: Optional[int],
              cursor: Optional[str], sort: Optional[str]) -> Response:
    if not body.strip():
        raise ApiError(400, "send a JSON selector as the body, e.g. {} for all datapoints "
                            'or {"label": "temp"}')
    selector = _load_json(body, "the selector", reject_constant=_reject_selector_constant,
                          too_deep=lambda: QueryError("the selector is nested too deeply"))
    if not isinstance(selector, dict):
        raise QueryError(f"a selector must be a JSON object such as {{\"label\": \"temp\"}}, "
                         f"got a JSON {type(selector).__name__}")
    if limit is not None:
        # One page, answered whole: its cursor is known before the answer starts, so it
        # can go in a header. (A streamed answer's cursor would only be known after its
        # body was sent, which is why pages are capped at PAGE_SIZE.)
        if limit > PAGE_SIZE:
            raise ApiError(422, f"limit is a page size of at most {PAGE_SIZE}, got {limit}: "
                                f"fetch more page by page (each page's X-Next-Cursor header "
                                f"is the next request's cursor), or leave limit out to "
                                f"receive every match in one streamed answer")
        page = service.query(selector, sort=sort, limit=limit, cursor=cursor)
        headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None
        return _json(_keyed(service, page.items), headers=headers)
    first = service.query(selector, sort=sort, limit=PAGE_SIZE, cursor=cursor)
    if first.next_cursor is None:
        return _json(_keyed(service, first.items))

    def pages() -> Iterator[DataPoint]:
        page = first
        yield from page.items
        while page.next_cursor is not None:
            page = service.query(selector, sort=sort, limit=PAGE_SIZE, cursor=page.next_cursor)
            yield from page.items

    # Every match (after ``cursor``, if given): nothing follows, so no cursor is needed.
    return _stream_keyed(service, pages(), None)


def _reject_selector_constant(name: str) -> Any:
    raise QueryError(f"{name} is not a JSON number")


class _BlobResponse(FileResponse):
    chunk_size = 1024 * 1024  # fewer, larger reads for big files


def _file_response(service: BenchService, datapoint_id: str) -> Response:
    """The file's bytes through the service's one path (held here, or fetched from the
    central store and verified first); errors are 404/502/503 with a sentence."""
    datapoint, sha256 = service.file_blob(datapoint_id)
    blob_path = service.files.path_for(sha256)
    try:
        stat_result = os.stat(blob_path)
    except FileNotFoundError:  # freed between the lookup and now: ask again
        return _error_response(404, f"the file of datapoint {datapoint.datapoint_id} was "
                                    "removed from this bench's file store just now; ask again")
    filename = getattr(datapoint, "filename", None)
    media_type = getattr(datapoint, "content_type", None) or guess_content_type(filename or "")
    return _BlobResponse(blob_path, media_type=media_type, filename=filename,
                         content_disposition_type="inline", stat_result=stat_result,
                         headers={"etag": f'"{sha256}"'})
