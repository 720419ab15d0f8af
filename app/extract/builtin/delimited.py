"""CSV and TSV tables: delimiter, header row, columns, row count and the ranges of numeric
columns, read with the same sniffing as the window's preview (``app.core.tabular``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

from app.core.tabular import read_table

SUFFIXES: Final[frozenset[str]] = frozenset({".csv", ".tsv", ".tab"})
#: The part of the file the table (and the numeric ranges) is read from.
SAMPLE_BYTES: Final[int] = 4 * 1024 * 1024
SAMPLE_ROWS: Final[int] = 100_000
#: Numeric ranges are given for at most this many columns.
MAX_RANGES: Final[int] = 20
_DELIMITER_NAMES: Final[dict[str, str]] = {",": "comma", ";": "semicolon", "\t": "tab",
                                           "|": "pipe"}


class DelimitedExtractor:
    name = "delimited"
    formats = "CSV and TSV tables (.csv, .tsv)"
    requires: tuple[str, ...] = ()

    def matches(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in SUFFIXES

    def extract(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as stream:
            raw = stream.read(SAMPLE_BYTES)
            whole = len(raw) < SAMPLE_BYTES
            if not whole:
                lines_after = _count_lines(stream)
        if b"\x00" in raw[:4096]:
            raise ValueError("not a text table: the file holds binary data")
        text = raw.decode("utf-8-sig", errors="replace")
        if not whole:
            text = text[: text.rfind("\n") + 1] or text
        table = read_table(text, path.name, row_limit=SAMPLE_ROWS)
        if table is None:
            return {"format": _format(path), "rows": 0}
        sampled = len(table.rows)
        complete = whole and not table.truncated
        rows = sampled if complete else raw.count(b"\n") + lines_after - int(table.has_header)
        out: dict[str, Any] = {
            "format": _format(path),
            "delimiter": _DELIMITER_NAMES.get(table.delimiter, table.delimiter),
            "header_row": table.has_header,
            "columns": table.header,
            "column_count": table.width,
            "rows": rows,
        }
        if not complete:
            out["ranges_from_rows"] = sampled
        ranges: dict[str, Any] = {}
        for name, values in list(table.numeric.items())[:MAX_RANGES]:
            present = [v for v in values if not math.isnan(v)]
            if present:
                ranges[name] = {"min": min(present), "max": max(present)}
        if ranges:
            out["range"] = ranges
        return out


def _format(path: Path) -> str:
    return "tsv" if path.suffix.lower() in (".tsv", ".tab") else "csv"


def _count_lines(stream: Any) -> int:
    count = 0
    while chunk := stream.read(4 * 1024 * 1024):
        count += chunk.count(b"\n")
    return count
