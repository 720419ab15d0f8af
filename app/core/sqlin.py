"""The one way to look many values up with ``IN (?, …)``: in chunks that stay under SQLite's
bound-parameter limit (999 on older builds), each with its own placeholder list."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

#: Values per ``IN (…)`` list: well under SQLite's oldest limit of 999 bound parameters,
#: leaving room for the statement's other parameters.
IN_CHUNK: Final[int] = 500

T = TypeVar("T")


def placeholders(count: int) -> str:
    """``?, ?, …`` for ``count`` values (the inside of an ``IN (…)`` list)."""
    return ", ".join("?" * count)


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[tuple[str, list[T]]]:
    """(placeholders, values) for each run of at most ``size`` values, in order:
    ``for marks, chunk in in_chunks(ids): conn.execute(f"… IN ({marks})", chunk)``."""
    items = list(values)
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield placeholders(len(chunk)), chunk
