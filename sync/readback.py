"""A push batch's records in flight: what identifies our write, and its read-back.

An item is confirmed only when its central record reads back as written: one ``find``
per batch (``_id $in``, a light projection, one round trip) must return our revision,
our bench id and — for files — the object's name, size and SHA-256, or a later revision
that superseded ours. The central work of a batch runs on a thread of its own
(:class:`RecordQueue`) while the pass prepares the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

from sync.backends import UpdateOne
from sync.documents import BENCH, REVISION

#: What identifies our write of a record, revision first: the writer and revision, and
#: for a file which object it points at. The read-back projects to these fields only (one
#: small reply per batch, not the documents again) and compares them as one tuple.
_VALUE_FIELDS: tuple[str, ...] = (REVISION, BENCH)
_FILE_FIELDS: tuple[str, ...] = (REVISION, BENCH, "object_name", "size_bytes", "sha256")

#: The read-back fields of one record, in the batch's field order (missing ones None).
Signature = tuple[Any, ...]


def read_back_fields(documents: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The fields a batch's records are read back by (file fields only if it has files)."""
    if any(d.get("data_type") == "object_storage" for d in documents):
        return _FILE_FIELDS
    return _VALUE_FIELDS


def signature(record: Mapping[str, Any], fields: Sequence[str]) -> Signature:
    """The record's values of ``fields`` (revision first)."""
    return tuple(map(record.get, fields))


def reads_back(found: Optional[Signature], wrote: Signature) -> bool:
    """Whether a record read back after our write confirms it.

    Ours as written (same revision, bench and object), or a newer revision: a later
    writer reached the central store after us (last writer wins), so ours did arrive.
    Anything else — missing, an older revision, our revision holding another bench's
    write or another object — is not confirmed.
    """
    if found is None:
        return False
    if found == wrote:
        return True
    theirs = found[0]
    return isinstance(theirs, int) and theirs > wrote[0]


@dataclass
class BatchOutcome:
    """What a batch's central work leaves for this thread's bookkeeping."""

    #: Read back as written: to confirm locally.
    confirmed: list[tuple[str, int]] = field(default_factory=list)
    #: Lifted above a concurrent writer: to push again in this pass.
    again: set[str] = field(default_factory=set)

    def merge(self, other: "BatchOutcome") -> None:
        self.confirmed.extend(other.confirmed)
        self.again |= other.again


@dataclass
class PreparedRecords:
    """A batch's records, built on the pass's thread before they are written."""

    rows: list[dict[str, Any]]
    objects: dict[str, dict[str, Any]]
    documents: dict[str, dict[str, Any]]
    upserts: list[UpdateOne]


class RecordQueue:
    """Central record work (write, read back) of one batch at a time, on its own thread.

    While batch k is written and read back, the pass builds batch k+1 and confirms
    batch k-1 locally, so the central store gets its requests back to back instead of
    waiting for the bench between batches. At most one batch is in flight (bounded memory;
    batches reach the central store in order). ``submit`` and ``wait`` hand back the
    outcome of the batch that finished, re-raising what its task raised.
    """

    def __init__(self) -> None:
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Future[BatchOutcome]] = None

    def submit(self, task: Callable[[], BatchOutcome]) -> BatchOutcome:
        finished = self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-records")
        self._pending = self._pool.submit(task)
        return finished

    def wait(self) -> BatchOutcome:
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else BatchOutcome()

    def close(self) -> None:
        """Wait for the batch in flight (its outcome is dropped: items stay due)."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
