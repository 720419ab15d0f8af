"""Reading delimited text (CSV, TSV …): the one copy of the sniffing rules.

The window's preview (``app/ui/previews.py``) and the CSV extractor
(``app/extract/builtin/delimited.py``) both read a table through :func:`read_table`, so
what the preview shows as columns is what the extracted metadata says. Bounded: the caller
passes at most a few megabytes of text and a row limit.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Final, Optional

#: Delimiters the sniffer may pick.
DELIMITERS: Final[str] = ",;\t|"
#: How much text the sniffer looks at.
SNIFF_CHARS: Final[int] = 8192


@dataclass
class Table:
    """A table read from delimited text; ``header`` names every column."""

    delimiter: str
    has_header: bool
    header: list[str]
    rows: list[list[str]]
    #: Columns whose cells are (at least 90 %) numbers, NaN where a cell is not.
    numeric: dict[str, list[float]] = field(default_factory=dict)
    #: True when ``row_limit`` stopped the reading.
    truncated: bool = False

    @property
    def width(self) -> int:
        return len(self.header)


def number(text: str) -> Optional[float]:
    """The finite number a cell holds, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def sniff_delimiter(text: str, filename: str = "") -> str:
    """The delimiter of ``text``: sniffed, else a tab for ``.tsv`` and a comma otherwise."""
    delimiter = "\t" if filename.lower().endswith(".tsv") else ","
    try:
        return csv.Sniffer().sniff(text[:SNIFF_CHARS], delimiters=DELIMITERS).delimiter
    except csv.Error:
        return delimiter


def read_table(text: str, filename: str = "", *, row_limit: int) -> Optional[Table]:
    """Parse ``text`` as a delimited table (None when it has no rows)."""
    delimiter = sniff_delimiter(text, filename)
    rows: list[list[str]] = []
    truncated = False
    for row in csv.reader(io.StringIO(text), delimiter=delimiter):
        if row:
            rows.append(row)
        if len(rows) > row_limit:
            truncated = True
            break
    if not rows:
        return None
    width = max(len(r) for r in rows)
    has_header = not all(number(c) is not None for c in rows[0] if c.strip()) and len(rows) > 1
    header = rows[0] if has_header else [f"column {i + 1}" for i in range(width)]
    body = rows[1:] if has_header else rows
    header = header + [f"column {i + 1}" for i in range(len(header), width)]
    numeric: dict[str, list[float]] = {}
    for column, name in enumerate(header):
        values = [number(r[column]) if column < len(r) else None for r in body]
        present = [v for v in values if v is not None]
        if body and len(present) >= max(2, int(0.9 * len(body))):
            numeric[name] = [v if v is not None else math.nan for v in values]
    return Table(delimiter=delimiter, has_header=has_header, header=header, rows=body,
                 numeric=numeric, truncated=truncated)
