"""Parsing a submitted datapoint: the ``datapoint`` form field as strict JSON, checked
before any file byte is read, and the file datapoint an upload becomes."""

from __future__ import annotations

import codecs
import json
import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any, Final, Optional
from urllib.parse import parse_qsl

from pydantic import ValidationError as PydanticValidationError

from app.api.errors import ApiError
from app.core.errors import describe_validation_error
from app.core.filestore import BlobInfo
from app.core.ids import is_ulid
from app.core.jsonvalue import check_json_value
from app.core.models import (
    DataPoint,
    DataPointTypeEnum,
)
from app.service import guess_content_type

#: The JSON text of one datapoint (the store caps a JSON value at 15 MiB; room for the rest).
MAX_DATAPOINT_BYTES: Final[int] = 20 * 1024 * 1024
#: Longest file name kept (most file systems allow 255 bytes).
MAX_FILENAME_CHARS: Final[int] = 200

_FILE_FACTS: Final[tuple[str, ...]] = ("filename", "size_bytes", "sha256", "content_type")


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


def load_json(text: str | bytes, what: str, *, reject_constant: Callable[[str], Any],
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
    document = load_json(text, "the datapoint field", reject_constant=_reject_constant,
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
