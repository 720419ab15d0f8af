"""Write times a reader can trust: every write time a bench gives a central document is
followed, within ``WRITE_BOUND_S``, by that document being readable.

A pull re-reads only ``pull_overlap_s`` behind its cursor (``sync.pull``). That is safe
only if a document stamped at T is readable by T + overlap: a write stamped at T that
commits later can be passed by a reader whose cursor went beyond T meanwhile (a document
stamped after it committed first), and the reader's next pass starts ``overlap`` behind
its cursor. MongoDB stamps (``$currentDate``) as it applies an operation, and the
operation is applied before the reply, so every stamp a write gives and every commit it
makes lie between the moment the bench sent it and the moment the reply arrived. A bench
that times its writes therefore knows a bound on each stamp-to-commit delay it caused.

The rule: a write that took longer than ``WRITE_BOUND_S`` is stamped again (a small
``update_many`` by id), until a stamp write returns within the bound; only then are its
items confirmed. An item not confirmed is written again by the next pass, and a retry
that finds its own record already there stamps it again too, so a bench killed between a
slow write and its new stamp is covered. The overlap is never below the bound
(``sync.settings``), whatever the lab's settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final, Optional

from sync.backends import RecordCollection
from sync.documents import WRITTEN_AT

log = logging.getLogger(__name__)

#: A write's stamp must be readable within this many seconds, or it is stamped again.
WRITE_BOUND_S: Final = 5.0
#: How many quick stamp writes are tried before the items wait for the next pass.
STAMP_ATTEMPTS: Final = 3
#: Ids per stamp write.
STAMP_CHUNK: Final = 1000


def write_bound_s() -> float:
    """The bound in force (read at each call, so a test can narrow it)."""
    return WRITE_BOUND_S


class WriteTimer:
    """Times one central write: ``with WriteTimer() as timer: …``; then ``timer.slow``
    says whether its stamps may have been readable only after the bound."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> "WriteTimer":
        self.started = time.monotonic()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.seconds = time.monotonic() - self.started

    @property
    def slow(self) -> bool:
        return self.seconds > write_bound_s()


def stamp_again(collection: RecordCollection, ids: Sequence[str],
                extra: Optional[dict[str, Any]] = None) -> bool:
    """Give the documents ``ids`` a new write time, until one stamp write of each chunk
    returns within the bound. False if a chunk did not in ``STAMP_ATTEMPTS`` tries: its
    items must not be confirmed (the caller retries them next pass). Errors are the
    backend's own (the caller classifies them). ``extra``: more of the update."""
    update: dict[str, Any] = {"$currentDate": {WRITTEN_AT: True}, **(extra or {})}
    for start in range(0, len(ids), STAMP_CHUNK):
        chunk = list(ids[start:start + STAMP_CHUNK])
        for attempt in range(1, STAMP_ATTEMPTS + 1):
            with WriteTimer() as timer:
                collection.update_many({"_id": {"$in": chunk}}, update)
            if not timer.slow:
                break
            log.warning("the central store took %.1f s to stamp %d document(s) "
                        "(bound %.1f s; attempt %d of %d)", timer.seconds, len(chunk),
                        write_bound_s(), attempt, STAMP_ATTEMPTS)
        else:
            return False
    return True


def slow_write_message(seconds: float) -> str:
    """Why items written slowly wait for the next pass (one sentence for the operator)."""
    return (f"the central store took {seconds:.1f} s to write; the record is kept "
            f"unconfirmed and written again, so no other bench can miss it")
