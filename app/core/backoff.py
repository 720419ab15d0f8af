"""The one backoff formula: how long to wait before trying something again.

Every retry in the product (an outbox item, the sync loop, object storage, a file the
watcher could not capture yet) waits ``base * 2**(attempt-1)`` seconds, capped at ``cap``.
With ``jitter`` the wait is drawn uniformly from the upper half of that, ``[d/2, d]``, so
many benches (or many items) failing at the same moment do not all retry at the same
moment, while a retry still never comes sooner than half the nominal delay.
"""

from __future__ import annotations

import random
from typing import Optional

#: Beyond this many doublings every useful cap is reached; it also keeps 2**n finite.
_MAX_DOUBLINGS = 60


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: bool = True,
                  rng: Optional[random.Random] = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    ``attempt`` below 1 counts as 1. ``rng`` makes the jitter reproducible in tests.
    """
    doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
    ceiling = min(cap, base * 2.0 ** doublings)
    if not jitter:
        return ceiling
    return (rng or random).uniform(ceiling / 2, ceiling)
