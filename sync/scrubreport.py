"""What a scrub reports (problems, progress, totals) and how fast it may read.

The vocabulary of ``sync.verify``'s scrub, apart from the scrub itself: a
:class:`Problem` per thing found wrong, :class:`Progress` for a view, the
:class:`VerifyReport` a run returns, and the :class:`RateLimiter` that keeps a scheduled
scrub from taking the disk or network away from capture.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from app.core.timestamps import now_canonical

MIB = 1024 * 1024
#: Bytes read (and hashed) at a time.
CHUNK_SIZE = 1 * MIB


class RateLimiter:
    """A token bucket over bytes: at most ``mib_per_s`` MiB/s on average, with a burst of
    one second's worth. 0 (or less) means unlimited. ``clock`` and ``sleep`` are
    injectable so the limit can be checked without a wall clock."""

    def __init__(self, mib_per_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.rate = max(0.0, float(mib_per_s)) * MIB
        self.capacity = max(self.rate, float(CHUNK_SIZE))
        self._tokens = self.capacity
        self._last: Optional[float] = None
        self._clock = clock
        self._sleep = sleep

    def consume(self, size: int) -> None:
        """Account for ``size`` bytes, waiting as long as the rate asks."""
        if self.rate <= 0:
            return
        now = self._clock()
        if self._last is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        if self._tokens < 0:
            self._sleep(-self._tokens / self.rate)
            self._tokens = 0.0
            self._last = self._clock()


@dataclass
class Problem:
    """Something a scrub found wrong, with the datapoints it concerns."""

    where: str  # "local" | "central"
    kind: str  # "missing" | "damaged"
    datapoint_ids: list[str]
    detail: str
    repaired: bool = False
    #: What repair did, or why it could not.
    repair: Optional[str] = None

    def line(self) -> str:
        ids = ", ".join(self.datapoint_ids[:5]) + (
            f" (+{len(self.datapoint_ids) - 5} more)" if len(self.datapoint_ids) > 5 else "")
        text = f"{self.where} {self.kind}: {ids}: {self.detail}"
        if self.repair:
            text += f" -> {'repaired: ' if self.repaired else 'not repaired: '}{self.repair}"
        return text


@dataclass
class Progress:
    phase: str
    items_done: int
    items_total: int
    bytes_done: int
    bytes_total: int


@dataclass
class VerifyReport:
    started_at: str = field(default_factory=now_canonical)
    central: bool = False
    deep: bool = False
    repair: bool = False
    rate_mib_s: float = 0.0
    #: File datapoints whose bytes were checked (locally, centrally or both).
    files: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    #: Blobs not kept here whose central copy is verified (freed; fetched on demand).
    central_only: int = 0
    objects: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: Why (part of) the scrub could not run (the central store unreachable, say).
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is wrong now: no error, and every problem found was repaired."""
        return not self.errors and all(p.repaired for p in self.problems)

    def summary(self) -> dict[str, Any]:
        return {"central": self.central, "deep": self.deep, "files": self.files,
                "bytes_hashed": self.bytes_hashed, "objects": self.objects,
                "problems": len(self.problems),
                "repaired": sum(p.repaired for p in self.problems),
                "problem_ids": sorted({i for p in self.problems if not p.repaired
                                       for i in p.datapoint_ids})[:20],
                "errors": self.errors[:5]}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data
