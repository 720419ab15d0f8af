"""Staging: the one way a capture brings bytes into the file store before its row exists.

:meth:`BenchService.stage_blobs` makes a :class:`StagedBlobs`; every capture path (submit,
upload, watcher, REST) puts its files through it. See DEVELOPING.md "Blobs in flight".
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from app.core import capture_notes
from app.core.filestore import BlobInfo, ProgressCallback

if TYPE_CHECKING:
    from app.core.models import DataPoint
    from app.service import BenchService


def _size_of(source: os.PathLike[str] | str) -> Optional[int]:
    try:
        return os.stat(source).st_size
    except OSError:
        return None  # the copy itself reports why


class StagedBlobs:
    """Blobs one capture put into the file store, each held until the capture settles.

    Made by :meth:`BenchService.stage_blobs`; see DEVELOPING.md "Blobs in flight"."""

    def __init__(self, service: BenchService, front_end: Optional[str] = None) -> None:
        self._service = service
        self._front_end = front_end
        self.held: list[str] = []
        #: One note per copy in flight, so a crash is reported (app/core/capture_notes.py).
        self._notes: list[capture_notes.OpenNote] = []

    def put_file(self, source: os.PathLike[str] | str, *,
                 progress: Optional[ProgressCallback] = None,
                 follow_symlinks: bool = True,
                 datapoint: Optional[DataPoint] = None,
                 note_source: Optional[os.PathLike[str] | str] = None) -> BlobInfo:
        """Copy ``source`` into the file store, held. ``datapoint`` is what the capture is
        to become (kept in its note to capture it again after a crash); ``note_source``
        names what the operator captured when ``source`` is an intermediate (an archive)."""
        self._note(note_source or source, _size_of(source), datapoint)
        blob = self._service.files.put_file(source, progress=progress, hold=True,
                                            follow_symlinks=follow_symlinks)
        self.held.append(blob.sha256)
        return blob

    def put_stream(self, stream: BinaryIO, *, expected_size: Optional[int] = None,
                   progress: Optional[ProgressCallback] = None) -> BlobInfo:
        name = getattr(stream, "name", None)  # a spooled upload's is a descriptor number
        self._note(name if isinstance(name, (str, bytes, os.PathLike)) and name else
                   "an upload", expected_size, None)
        blob = self._service.files.put_stream(stream, expected_size=expected_size,
                                              progress=progress, hold=True)
        self.held.append(blob.sha256)
        return blob

    def _note(self, source: os.PathLike[Any] | str | bytes, size: Optional[int],
              datapoint: Optional[DataPoint]) -> None:
        described = datapoint.model_dump(mode="json") if datapoint is not None else None
        self._notes.append(self._service.capture_notes.begin(
            os.fsdecode(source), size, datapoint=described, front_end=self._front_end))

    def settle(self, committed: bool) -> None:
        """End the holds (idempotent); after a failure remove the blobs no row uses."""
        held, self.held = self.held, []
        notes, self._notes = self._notes, []
        try:
            self._service.settle_blobs(held, committed)
        finally:
            for note in notes:
                note.end()

    def __enter__(self) -> "StagedBlobs":
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        self.settle(committed=exc_type is None)
