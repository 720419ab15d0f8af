"""Write times a reader can trust: every write time a bench gives a central document is
followed, within a bound (:func:`write_bound_s`), by that document being readable.

A pull re-reads only ``pull_overlap_s`` behind its cursor (``sync.pull``). That is safe
only if a document stamped at T is readable by T + overlap: a write stamped at T that
commits later can be passed by a reader whose cursor went beyond T meanwhile (a document
stamped after it committed first), and the reader's next pass starts ``overlap`` behind
its cursor. MongoDB stamps (``$currentDate``) as it applies an operation, and the
operation is applied before the reply, so every stamp a write gives and every commit it
makes lie between the moment the bench sent it and the moment the reply arrived. A bench
that times its writes therefore knows a bound on each stamp-to-commit delay it caused.

The rule: a write that took longer than the bound is stamped again (a small
``update_many`` by id), until a stamp write returns within the bound; only then are its
items confirmed. An item not confirmed is written again by the next pass, and a retry
that finds its own record already there stamps it again too, so a bench killed between a
slow write and its new stamp is covered. The bound is half the lab's overlap and at least
``WRITE_BOUND_S``; a pull's overlap is never below it, whatever the settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from sync.backends import RecordCollection
from sync.documents import WRITTEN_AT

log = logging.getLogger(__name__)

#: The least bound (and so the least overlap a pull uses), in seconds.
WRITE_BOUND_S: Final = 5.0
#: How many quick stamp writes are tried before the items wait for the next pass.
STAMP_ATTEMPTS: Final = 3
#: Ids per stamp write.
STAMP_CHUNK: Final = 1000


def least_overlap_s(overlap_s: float) -> float:
    """The overlap a pull uses: the setting, never below the least bound."""
    return max(overlap_s, WRITE_BOUND_S)


def write_bound_s(overlap_s: float) -> float:
    """The bound a bench keeps its writes to: half the lab's ``pull_overlap_s`` (the same
    on every bench; the site file can lock it), never below ``WRITE_BOUND_S``. Always
    within the overlap readers use (:func:`least_overlap_s`); a lab whose central store is
    slower raises the overlap, and with it the bound."""
    return max(WRITE_BOUND_S, overlap_s / 2)


class WriteTimer:
    """Times one central write: ``with WriteTimer(bound_s) as timer: …``; then
    ``timer.slow`` says whether its stamps may have become readable only after the bound."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> "WriteTimer":
        self.started = time.monotonic()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.seconds = time.monotonic() - self.started

    @property
    def slow(self) -> bool:
        return self.seconds > self.bound_s


def stamp_again(collection: RecordCollection, ids: Sequence[str], bound_s: float) -> bool:
    """Give the documents ``ids`` a new write time, until one stamp write of each chunk
    returns within ``bound_s``. False if a chunk did not in ``STAMP_ATTEMPTS`` tries: its
    items must not be confirmed (the caller retries them next pass). Errors are the
    backend's own (the caller classifies them)."""
    update = {"$currentDate": {WRITTEN_AT: True}}
    for start in range(0, len(ids), STAMP_CHUNK):
        chunk = list(ids[start:start + STAMP_CHUNK])
        for attempt in range(1, STAMP_ATTEMPTS + 1):
            with WriteTimer(bound_s) as timer:
                collection.update_many({"_id": {"$in": chunk}}, update)
            if not timer.slow:
                break
            log.warning("the central store took %.1f s to stamp %d document(s) "
                        "(bound %.1f s; attempt %d of %d)", timer.seconds, len(chunk),
                        bound_s, attempt, STAMP_ATTEMPTS)
        else:
            return False
    return True


def slow_write_message(timer: WriteTimer) -> str:
    """Why items written slowly wait for the next pass (for the operator)."""
    return (f"the central store took {timer.seconds:.1f} s to write (more than "
            f"{timer.bound_s:.0f} s), so the record stays unconfirmed and is written again "
            f"until no other bench can miss it; if the store is always this slow, raise "
            f"central.pull_overlap_s on every bench to twice the write time")
