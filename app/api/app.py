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

This module assembles the routes; each concept has its module: ``errors`` (one mapping
from error to status), ``wire`` (documents, JSON answers), ``parse`` (a submitted
datapoint, checked), ``submit`` (``POST /datapoint`` bodies into committed datapoints),
``reads`` (lists, queries, file bytes).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final, Optional

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.api.errors import ApiError, install_error_handlers, missing_datapoint_field, not_found
from app.api.group_commit import GroupCommitter
from app.api.guard import ApiGuard
from app.api.ingest import DatapointIngest
from app.api.multipart import MultipartError, boundary_of
from app.api.parse import MAX_DATAPOINT_BYTES
from app.api.parse import datapoint_field as datapoint_field  # re-exported
from app.api.parse import safe_filename as safe_filename  # re-exported
from app.api.reads import (
    PAGE_SIZE,
    file_response,
    keyed,
    report_disk_space,
    run_central_query,
    run_query,
    stream_keyed,
)
from app.api.submit import (
    MAX_FORM_BODY_BYTES,
    BodySource,
    read_body,
    small_submission_handler,
    submit_multipart,
    submit_text,
    submit_urlencoded,
)
from app.api.wire import json_response, wire_document
from app.api.wire import value_document as value_document  # re-exported
from app.core.errors import NotFoundError
from app.core.jsonvalue import MAX_VALUE_BYTES
from app.core.models import DataPointTypeEnum, ValueDataPoint
from app.service import BenchService

#: The MADSci Data Manager API version whose wire protocol this API follows.
MADSCI_API_VERSION: Final[str] = "0.8.1"
#: A query selector.
MAX_SELECTOR_BYTES: Final[int] = 1024 * 1024


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
    409: "A different datapoint already has this id (the same datapoint again is a 200); "
         "for a query with central=true: no central store is configured on this bench.",
    413: f"Over a limit: a datapoint field of at most {MAX_DATAPOINT_BYTES} bytes (a JSON "
         f"value of at most {MAX_VALUE_BYTES} bytes), an urlencoded form of at most "
         f"{MAX_FORM_BODY_BYTES} bytes, a selector of at most {MAX_SELECTOR_BYTES} bytes.",
    422: "The datapoint (or a parameter) does not validate: the message names the field.",
    424: "A query with central=true: the central store cannot answer now; try again later.",
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
    install_error_handlers(app)

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
            return missing_datapoint_field()
        if document is None:
            return missing_datapoint_field()
        return json_response(document)

    @app.get("/datapoint/{datapoint_id}", summary="Get a datapoint",
             responses=_error_answers(404))
    def get_datapoint(datapoint_id: str) -> Response:
        """The datapoint's document (``_id``, label, type, timestamp, value or file facts)."""
        try:
            datapoint = service.get(datapoint_id)
        except NotFoundError:
            return not_found(datapoint_id)
        document = wire_document(service, datapoint)
        if datapoint.data_type != DataPointTypeEnum.JSON:
            # An extra field (MADSci's models keep extras): the file's chain of custody.
            document["custody"] = service.custody(datapoint.datapoint_id)
        return json_response(document)

    @app.get("/datapoint/{datapoint_id}/value", summary="Get a datapoint's value",
             responses=_error_answers(404))
    def get_datapoint_value(datapoint_id: str) -> Response:
        """The JSON value, or the file's bytes with its content type (range requests
        supported)."""
        try:
            datapoint = service.get(datapoint_id)
        except NotFoundError:
            return not_found(datapoint_id)
        if isinstance(datapoint, ValueDataPoint):
            return json_response(datapoint.value)
        return file_response(service, datapoint_id)

    @app.get("/datapoints", summary="Get the newest datapoints",
             responses=_error_answers(408, 422))
    def get_datapoints(number: int = Query(100, ge=0, description=(
            "How many, newest first; 0 means all."))) -> Response:
        """An object keyed by id, newest first by data_timestamp."""
        if 0 < number <= PAGE_SIZE:
            return json_response(keyed(service, service.latest(number)))
        return stream_keyed(service, service.iter_query(None), number or None)

    @app.post("/datapoints/query", summary="Query datapoints",
              responses=_error_answers(400, 408, 409, 413, 422, 424), openapi_extra={
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
        central: bool = Query(False, description=(
            "Ask the central store instead of this bench (datapoints outside its pull scope "
            "too): the newest matches, up to limit (default 100, at most 1000), each with "
            '"location": "here" or "central"; GET /datapoint/{id} then keeps one here. '
            "409 without a central store, 424 when it cannot answer.")),
    ) -> Response:
        """Datapoints matching a selector, as an object keyed by id, newest first."""
        body = await read_body(request, MAX_SELECTOR_BYTES, "the selector")
        if central:
            return await run_in_threadpool(run_central_query, service, body, limit, cursor,
                                           sort)
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
        return json_response(report)

    @app.get("/settings", summary="Settings", responses=_error_answers(422))
    def get_settings(include_defaults: bool = True, include_schema: bool = False) -> Response:
        """This API's settings (as MADSci's ``{"settings": ...}``; never secrets)."""
        payload: dict[str, Any] = {
            "settings": settings.model_dump(mode="json", exclude_defaults=not include_defaults)}
        if include_schema:
            payload["schema"] = ApiSettings.model_json_schema()
            payload["schema_title"] = ApiSettings.__name__
        return json_response(payload)

    app.add_middleware(ApiGuard, token=token, loopback_only=loopback_only,
                       allowed_origins=allowed_origins)
    if fast_ingest:
        # The hot route skips the framework but not the guard.
        app.fast_ingest = ApiGuard(
            DatapointIngest(small_submission_handler(service, committer),
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
