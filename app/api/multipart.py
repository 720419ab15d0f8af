"""A pull-style ``multipart/form-data`` reader over python-multipart's push parser.

Starlette's form parser spools every file part to a temporary file and MADSci's handler
then reads it whole into memory. We want the bytes of an upload to go from the socket
straight into the file store (which hashes them in the same pass), in constant memory:
the file store *pulls* from a stream, python-multipart *pushes* callbacks. This module
bridges the two on one thread: reading from a part asks for the next body chunk, feeds it
to the parser, and returns the part data the callbacks produced. Memory stays bounded by
one body chunk plus the caller's read size.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

#: Most headers one part may carry (browsers and httpx send two or three).
MAX_PART_HEADERS = 16


class MultipartError(ValueError):
    """The request body is not well-formed multipart/form-data."""


@dataclass
class Part:
    """One part's headers; its body is read through :meth:`MultipartReader.read`.

    ``raw_headers`` keeps each header's bytes as sent: a file name is decoded from them
    (see :func:`parse_disposition`), never from a text guess made earlier."""

    headers: dict[str, str] = field(default_factory=dict)
    raw_headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def _disposition(self) -> dict[str, str]:
        raw = self.raw_headers.get("content-disposition")
        if raw is None:
            raw = self.headers.get("content-disposition", "").encode("utf-8")
        return parse_disposition(raw)

    @property
    def name(self) -> Optional[str]:
        return self._disposition.get("name")

    @property
    def filename(self) -> Optional[str]:
        """The client's file name as sent (untrusted: never use it as a path)."""
        return self._disposition.get("filename")

    @property
    def content_type(self) -> Optional[str]:
        value = self.headers.get("content-type", "").strip()
        return value or None


# -- Content-Disposition parameters ----------------------------------------------------
#
# Clients name files three ways, and all three must give back the name the user saw:
# * raw UTF-8 inside the quotes (RFC 7578 §4.2, the WHATWG HTML form encoding that
#   browsers, requests/urllib3 and httpx -- so MADSci's DataClient -- send), with only
#   ``"``, CR and LF percent-escaped as %22, %0D, %0A;
# * RFC 5987/2231 extended parameters, ``filename*=UTF-8''%E6%B8%AC.csv`` (older
#   urllib3, curl's --form-string users, many HTTP libraries), which win over a plain
#   ``filename`` beside them (RFC 6266 §4.3);
# * the whole name percent-encoded inside the quotes (some clients do this to stay
#   ASCII): decoded only when every escape is well formed and the result is UTF-8 text
#   with non-ASCII characters, so an ASCII name such as ``100%25.csv`` stays as it is.
# A plain name that is not UTF-8 is read as Latin-1 (what pre-UTF-8 clients sent).

_PARAM = re.compile(rb"""\s*([^\s=;]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?\s*(?:;|$)""",
                    re.DOTALL)
_HTML5_ESCAPES = {b"%22": b'"', b"%0D": b"\r", b"%0A": b"\n", b"%0d": b"\r", b"%0a": b"\n"}
_HTML5_ESCAPE = re.compile(rb"%22|%0[DdAa]")
_PERCENT_ENCODED = re.compile(rb"(?:[\x21-\x7e]*%[0-9A-Fa-f]{2})+[\x21-\x7e]*")


def parse_disposition(raw: bytes) -> dict[str, str]:
    """The parameters of a Content-Disposition header value, lower-case names, decoded.

    Never raises: a parameter that cannot be decoded is left out (a missing name is a
    4xx later, naming what is missing)."""
    _kind, _, rest = raw.partition(b";")
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        key = match.group(1).decode("latin-1").lower()
        value = match.group(2) or b""
        if key.endswith("*"):
            decoded = _decode_extended(value.strip())
            if decoded is not None:
                extended[key[:-1]] = decoded
        else:
            plain[key] = _decode_plain(value.strip())
    return {**plain, **extended}


def _decode_plain(value: bytes) -> str:
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        value = re.sub(rb"\\(.)", rb"\1", value[1:-1], flags=re.DOTALL)
    if value.isascii() and _PERCENT_ENCODED.fullmatch(value):
        whole = unquote_to_bytes(value)
        if not whole.isascii():
            try:
                return whole.decode("utf-8")
            except UnicodeDecodeError:
                pass
    value = _HTML5_ESCAPE.sub(lambda m: _HTML5_ESCAPES[m.group(0)], value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _decode_extended(value: bytes) -> Optional[str]:
    """``charset'language'percent-encoded`` (RFC 5987); None if malformed."""
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        value = value[1:-1]  # not allowed, but seen; the content is what counts
    charset, quote, rest = value.partition(b"'")
    _language, quote2, encoded = rest.partition(b"'")
    if not quote or not quote2:
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset.decode("ascii") or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return None


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type header (raises MultipartError)."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {kind.decode(errors='replace')}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("the multipart/form-data Content-Type has no boundary")
    return boundary


class MultipartReader:
    """Walk the parts of one body: ``next_part()``, then ``read()`` its bytes.

    ``next_chunk`` returns the next piece of the request body, ``b""`` at its end.
    """

    def __init__(self, next_chunk: Callable[[], bytes], boundary: bytes) -> None:
        self._next_chunk = next_chunk
        self._events: deque[tuple[str, object]] = deque()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._raw_headers: dict[str, bytes] = {}
        self._body_done = False
        self._parser_done = False
        self._in_part = False  # between a part's headers and its end
        self._pending = b""
        self._pending_at = 0
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }, max_header_count=MAX_PART_HEADERS)

    # -- parser callbacks (run inside parser.write) ------------------------------------

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._raw_headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._raw_headers[name] = bytes(self._header_value).strip()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(("part", Part(self._headers, self._raw_headers)))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._parser_done = True

    # -- pulling -----------------------------------------------------------------------

    def _pump(self) -> bool:
        """Feed one more body chunk to the parser; False when the body is exhausted."""
        if self._body_done:
            return False
        chunk = self._next_chunk()
        try:
            if chunk:
                self._parser.write(chunk)
                return True
            self._body_done = True
            self._parser.finalize()
        except MultipartParseError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from None
        if not self._parser_done:
            raise MultipartError("the multipart body ended before its closing boundary")
        return True

    def _next_event(self) -> Optional[tuple[str, object]]:
        while not self._events:
            if not self._pump():
                return None
        return self._events.popleft()

    def next_part(self) -> Optional[Part]:
        """Skip what is left of the current part; return the next one, or None at the end."""
        while self._in_part:
            self.read(1 << 20)
        while True:
            event = self._next_event()
            if event is None:
                return None
            kind, payload = event
            if kind == "part":
                self._in_part = True
                self._pending, self._pending_at = b"", 0
                assert isinstance(payload, Part)
                return payload

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the current part (all of it for -1); b"" at its end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        out: list[bytes] = []
        wanted = size
        while wanted > 0:
            if self._pending_at < len(self._pending):
                piece = self._pending[self._pending_at:self._pending_at + wanted]
                self._pending_at += len(piece)
                out.append(piece)
                wanted -= len(piece)
                continue
            if not self._in_part:
                break
            event = self._next_event()
            if event is None:
                raise MultipartError("the multipart body ended inside a part")
            kind, payload = event
            if kind == "data":
                assert isinstance(payload, bytes)
                self._pending, self._pending_at = payload, 0
            elif kind == "end":
                self._in_part = False
        return out[0] if len(out) == 1 else b"".join(out)

    def drain(self, limit: int) -> bool:
        """Discard up to ``limit`` more body bytes, so that a client still sending sees our
        answer rather than a reset connection; False if the body was longer than that."""
        self._events.clear()
        self._in_part = False
        while not self._body_done:
            chunk = self._next_chunk()
            if not chunk:
                self._body_done = True
                break
            limit -= len(chunk)
            if limit < 0:
                return False
        return True


class PartStream:
    """The current part as a read-only binary file object (for the file store)."""

    def __init__(self, reader: MultipartReader, name: str = "the upload") -> None:
        self._reader = reader
        self.name = name  # for the file store's error messages
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> "PartStream":
        return self

    def __exit__(self, *_exc: object) -> None:
        pass
