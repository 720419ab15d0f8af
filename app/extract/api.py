"""The extractor interface, and how an extractor's answer becomes custom metadata.

An extractor is any object (or a class made with no arguments) with::

    name: str                                   # short and unique, e.g. "tiff"
    def matches(self, path: Path, head: bytes) -> bool: ...
    def extract(self, path: Path) -> dict: ...

and optionally ``formats: str`` (what ``benchdata formats`` shows) and
``requires: tuple[str, ...]`` (the modules it imports; listed as "not installed" when
missing). ``path`` carries the file's original name (``acqus``, ``run.csv``); ``head`` is
its first :data:`HEAD_BYTES` bytes. ``extract`` returns a JSON-like dict with at least
``format``; nested dicts become dotted keys. It runs in a separate process with a time and
memory limit, so it may simply raise on a file it cannot read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

#: Every extracted field is kept as ``custom_metadata["extracted.<field>"]`` (MADSci's
#: custom metadata is flat text; the query language reads
#: ``custom_metadata.extracted.format`` as that key).
PREFIX: Final[str] = "extracted."
ERROR_KEY: Final[str] = PREFIX + "error"
#: How many bytes of the file ``matches`` sees.
HEAD_BYTES: Final[int] = 4096
#: Bounds on what one file adds to its datapoint.
MAX_FIELDS: Final[int] = 120
MAX_VALUE_CHARS: Final[int] = 1000
MAX_LIST_ITEMS: Final[int] = 50
MAX_ERROR_CHARS: Final[int] = 500


@runtime_checkable
class Extractor(Protocol):
    name: str

    def matches(self, path: Path, head: bytes) -> bool: ...

    def extract(self, path: Path) -> dict[str, Any]: ...


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}" if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def _list_text(items: Any) -> str:
    items = list(items)
    shown = items[:MAX_LIST_ITEMS]
    if all(not isinstance(item, (dict, list, tuple)) for item in shown):
        text = ", ".join(_text(item) for item in shown)
    else:
        text = json.dumps(shown, ensure_ascii=False, default=_text)
    return text + (f", … ({len(items)} in all)" if len(items) > len(shown) else "")


def to_metadata(result: dict[str, Any], extractor_name: str) -> dict[str, str]:
    """Flatten an extractor's result into bounded ``extracted.*`` text metadata."""
    flat: dict[str, str] = {}

    def add(key: str, value: Any) -> None:
        if value is None or len(flat) >= MAX_FIELDS:
            return
        if isinstance(value, dict):
            for child_key, child in value.items():
                add(f"{key}.{child_key}", child)
            return
        text = _list_text(value) if isinstance(value, (list, tuple)) else _text(value)
        flat[PREFIX + key] = _clip(text)

    add("format", result.get("format") or extractor_name)
    for key, value in result.items():
        if key not in ("format", "extractor"):
            add(str(key), value)
    flat[PREFIX + "extractor"] = extractor_name
    return flat


def error_metadata(message: str) -> dict[str, str]:
    text = " ".join(message.split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 1] + "…"
    return {ERROR_KEY: text}


def describe_exception(exc: BaseException) -> str:
    """One sentence for the datapoint: a missing library says so."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return f"{top} is not installed (pip install {top})"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def extracted_of(metadata: dict[str, str]) -> dict[str, str]:
    """The extracted fields of a datapoint's metadata, prefix removed (for display)."""
    return {key[len(PREFIX):]: value for key, value in metadata.items()
            if key.startswith(PREFIX)}
