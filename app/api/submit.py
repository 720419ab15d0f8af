"""``POST /datapoint``: a request body (JSON, urlencoded or multipart) into a durably
committed datapoint. Runs on worker threads, except the fast route's handler."""

from __future__ import annotations

from typing import Any, Final, Optional

import anyio.from_thread
from fastapi import Request

from app.api.errors import MISSING_DATAPOINT_FIELD, ApiError, error_reply
from app.api.group_commit import GroupCommitter
from app.api.ingest import URLENCODED, Handler
from app.api.multipart import MultipartError, MultipartReader, PartStream
from app.api.parse import (
    MAX_DATAPOINT_BYTES,
    Upload,
    check_file_document,
    datapoint_field,
    datapoint_with_upload,
    datapoint_without_file,
    parse_datapoint_text,
    safe_filename,
)
from app.api.wire import dumps, wire_document
from app.core import capture_notes
from app.core.errors import BenchDataError
from app.service import BenchService

#: An urlencoded POST body (percent-encoding can triple the JSON's size).
MAX_FORM_BODY_BYTES: Final[int] = 3 * MAX_DATAPOINT_BYTES + 4096
#: After a refused upload, read (and discard) at most this much more of the body so the
#: client sees our answer; beyond it the connection is closed instead.
DRAIN_LIMIT_BYTES: Final[int] = 64 * 1024 * 1024


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


def submit_text(service: BenchService, text: str | bytes,
                committer: Optional[GroupCommitter] = None) -> dict[str, Any]:
    document = parse_datapoint_text(text)
    datapoint = datapoint_without_file(document)
    stored = committer.submit(datapoint) if committer else service.submit(datapoint)
    return wire_document(service, stored)


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
    # The service's one staging path: the upload is held and noted (a crash mid-upload
    # is reported as an interrupted capture) until the row is durably committed.
    staged = service.stage_blobs(front_end=capture_notes.SERVICE)
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
                    blob = staged.put_stream(stream)  # type: ignore[arg-type]
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
        staged.settle(committed)


def small_submission_handler(service: BenchService, committer: GroupCommitter) -> Handler:
    """The fast route's handler: the urlencoded or JSON body in, (status, JSON) out,
    with the same parsing, checks and error answers as ``create_datapoint``."""

    async def handle(kind: str, body: bytes) -> tuple[int, bytes]:
        try:
            text = datapoint_field(body) if kind == URLENCODED else body
            if text is None:
                return 422, dumps(MISSING_DATAPOINT_FIELD)
            datapoint = datapoint_without_file(parse_datapoint_text(text))
            stored = await committer.submit_async(datapoint)
            return 200, dumps(wire_document(service, stored))
        except Exception as exc:
            reply = error_reply(exc)
            if reply is None:
                raise
            return reply[0], dumps(reply[1])

    return handle
