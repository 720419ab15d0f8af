"""How many window entries a pull asks for in its next page: adapted to what pages cost.

A page's cost on the server is a fixed part per query plus a part per document. On a real
MongoDB the keyset query walks an index, the fixed part is small, and ``pull_page_size``
pages cost little each. nx-27017 (0.8.1) cannot test a date range in SQL: every keyset
page checks the range against every row of the collection in Python — about 4.5 s per page
at 1,000,000 documents, whatever the page returns — so a scoped first pull of 10,000
documents in pages of 1,000 paid ten full scans. When a page takes long, the next one asks
for proportionally more entries (at least twice as many), up to a cap; when pages are fast
again, it shrinks back towards the setting.

Only window entries (id, revision, write time, bench) grow with the page: the puller
applies a large page in slices of ``pull_page_size``, each in its own transaction with its
own cursor, so full documents held in memory and a kill's re-read stay one slice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: The largest page asked for: 10,000 window entries are a few MB of Python objects.
PAGE_SIZE_CAP = 10_000
#: A page slower than this is mostly the server's fixed cost per query: ask for more.
SLOW_PAGE_S = 1.0


class PageSizer:
    """The size of a pull's next page, from how long its last one took on the server."""

    def __init__(self, base: int, *, cap: int = PAGE_SIZE_CAP, slow_s: float = SLOW_PAGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.cap = max(base, cap)
        self.slow_s = slow_s
        self.clock = clock
        self.size = base
        #: The sizes asked for, in order (reported, and what the tests check).
        self.asked: list[int] = []

    def start(self) -> float:
        """Note a page asked for now; returns the clock reading to pass to :meth:`took`."""
        self.asked.append(self.size)
        return self.clock()

    def took(self, started: float, returned: int) -> None:
        """Adapt to a page of ``returned`` entries asked for at ``started``. Only full pages
        grow the next one: a short page was the last of the pull."""
        seconds = self.clock() - started
        if returned >= self.size and seconds > self.slow_s:
            grown = max(2 * self.size, math.ceil(self.size * seconds / self.slow_s))
            self.size = min(self.cap, grown)
        elif seconds < self.slow_s / 4:
            self.size = max(self.base, self.size // 2)
