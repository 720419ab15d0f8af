"""Answers that read the store: lists and queries streamed in pages, a file's bytes, and
the disk's space in the health report."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final, Optional

from starlette.responses import FileResponse, Response, StreamingResponse

from app.api.errors import ApiError, error_response
from app.api.parse import load_json
from app.api.wire import dumps, json_response, wire_document
from app.core.errors import QueryError
from app.core.models import DataPoint
from app.service import BenchService, guess_content_type

#: Rows per page when a list or query streams; lists up to this size are one response.
PAGE_SIZE: Final[int] = 1000
#: Bytes of JSON gathered before a streamed chunk is sent.
STREAM_CHUNK_BYTES: Final[int] = 256 * 1024


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


def keyed(service: BenchService, datapoints: list[DataPoint]) -> dict[str, Any]:
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
        piece = (b"" if first else b",") + dumps(datapoint.datapoint_id) + b":" + \
            dumps(wire_document(service, datapoint))
        first = False
        parts.append(piece)
        size += len(piece)
        if size >= STREAM_CHUNK_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"}")
    yield b"".join(parts)


def stream_keyed(service: BenchService, datapoints: Iterator[DataPoint],
                  limit: Optional[int], headers: Optional[dict[str, str]] = None) -> Response:
    return StreamingResponse(_json_object_chunks(service, datapoints, limit),
                             media_type="application/json", headers=headers)


def run_query(service: BenchService, body: bytes, limit: Optional[int],
              cursor: Optional[str], sort: Optional[str]) -> Response:
    selector = _selector(body)
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
        return json_response(keyed(service, page.items), headers=headers)
    first = service.query(selector, sort=sort, limit=PAGE_SIZE, cursor=cursor)
    if first.next_cursor is None:
        return json_response(keyed(service, first.items))

    def pages() -> Iterator[DataPoint]:
        page = first
        yield from page.items
        while page.next_cursor is not None:
            page = service.query(selector, sort=sort, limit=PAGE_SIZE, cursor=page.next_cursor)
            yield from page.items

    # Every match (after ``cursor``, if given): nothing follows, so no cursor is needed.
    return stream_keyed(service, pages(), None)


def _selector(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, "send a JSON selector as the body, e.g. {} for all datapoints "
                            'or {"label": "temp"}')
    selector = load_json(body, "the selector", reject_constant=_reject_selector_constant,
                          too_deep=lambda: QueryError("the selector is nested too deeply"))
    if not isinstance(selector, dict):
        raise QueryError(f"a selector must be a JSON object such as {{\"label\": \"temp\"}}, "
                         f"got a JSON {type(selector).__name__}")
    return selector


def run_central_query(service: BenchService, body: bytes, limit: Optional[int],
                      cursor: Optional[str], sort: Optional[str]) -> Response:
    """``?central=true``: the newest central matches, each marked where it is held."""
    from app.core.query import MAX_CENTRAL_RESULTS

    selector = _selector(body)
    if cursor is not None or sort is not None:
        raise ApiError(422, "a central query answers the newest matches in one page: leave "
                            "out cursor and sort, and narrow the selector instead")
    if limit is not None and limit > MAX_CENTRAL_RESULTS:
        raise ApiError(422, f"a central query answers at most {MAX_CENTRAL_RESULTS} "
                            f"datapoints, got limit {limit}; narrow the selector")
    items = service.query_central(selector, limit=limit or 100)
    held = service.store.existing_ids([dp.datapoint_id for dp in items])
    return json_response({dp.datapoint_id: {**wire_document(service, dp), "location":
                                            "here" if dp.datapoint_id in held else "central"}
                          for dp in items})


def _reject_selector_constant(name: str) -> Any:
    raise QueryError(f"{name} is not a JSON number")


class _BlobResponse(FileResponse):
    chunk_size = 1024 * 1024  # fewer, larger reads for big files


def file_response(service: BenchService, datapoint_id: str) -> Response:
    """The file's bytes through the service's one path (held here, or fetched from the
    central store and verified first); errors are 404/502/503 with a sentence."""
    datapoint, sha256 = service.file_blob(datapoint_id)
    blob_path = service.files.path_for(sha256)
    try:
        stat_result = os.stat(blob_path)
    except FileNotFoundError:  # freed between the lookup and now: ask again
        return error_response(404, f"the file of datapoint {datapoint.datapoint_id} was "
                                    "removed from this bench's file store just now; ask again")
    filename = getattr(datapoint, "filename", None)
    media_type = getattr(datapoint, "content_type", None) or guess_content_type(filename or "")
    return _BlobResponse(blob_path, media_type=media_type, filename=filename,
                         content_disposition_type="inline", stat_result=stat_result,
                         headers={"etag": f'"{sha256}"'})
