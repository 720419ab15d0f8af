"""What the window changes in the store, after anki's ``qt/aqt/operations``.

An operation is a function of the service that runs on the window's one writer thread and
returns an :class:`OpChanges`: which datapoints it wrote or removed, and what the detail
pane should show next. :func:`run_op` hands that to the caller's ``on_done`` (the status
bar's sentence, a dialog closing) and then announces it on :attr:`Operations.did_execute`,
the one signal the window's views redraw on (anki's ``operation_did_execute`` hook).
Commits made by other processes reach the same views through ``app.ui.changes``.

Reads (open, save a copy, previews) are not operations: they change nothing in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from app.service import BenchService
    from app.ui.context import UiContext


@dataclass(frozen=True)
class OpChanges:
    """What one operation changed, so each view decides whether to redraw."""

    #: Datapoints captured, edited or restored (new revisions).
    written: tuple[str, ...] = ()
    #: Datapoints deleted.
    removed: tuple[str, ...] = ()
    #: The datapoint the detail pane shows next (None: leave the pane alone).
    show: Optional[str] = None
    #: Ownership names may be new (the experiment filter lists them).
    names: bool = False

    @property
    def rows(self) -> bool:
        """The table's rows (and so the sync backlog) changed."""
        return bool(self.written or self.removed)


Op = Callable[["BenchService"], OpChanges]


class Operations(QObject):
    """The window's one "the store changed here" signal (``UiContext.operations``)."""

    #: An operation committed: its :class:`OpChanges` and who started it (or None).
    did_execute = Signal(object, object)

    def announce(self, changes: OpChanges, initiator: Any = None) -> None:
        """Tell the views about a change made outside :func:`run_op` (the capture queue)."""
        self.did_execute.emit(changes, initiator)


def run_op(context: UiContext, op: Op, on_done: Optional[Callable[[OpChanges], Any]] = None,
           on_error: Optional[Callable[[BaseException], Any]] = None,
           initiator: Any = None) -> None:
    """Run ``op`` on the writer thread; on success ``on_done``, then the views redraw."""

    def done(changes: OpChanges) -> None:
        try:
            if on_done is not None:
                on_done(changes)
        finally:
            context.operations.announce(changes, initiator)

    context.tasks.run(lambda: op(context.service), done, on_error, write=True)


# -- the operations --------------------------------------------------------------------------

def capture_value(value: Any, *, label: Optional[str], names: Mapping[str, str],
                  metadata: Mapping[str, str]) -> Op:
    """Capture a typed JSON value, owned by these names."""

    def op(service: BenchService) -> OpChanges:
        datapoint = service.capture_value(value, label=label, ownership=service.ownership(**names),
                                          metadata=dict(metadata))
        return OpChanges(written=(datapoint.datapoint_id,), show=datapoint.datapoint_id,
                         names=True)

    return op


def update_datapoint(datapoint_id: str, *, label: str, set_metadata: Mapping[str, str],
                     remove_metadata: Sequence[str], ownership: Mapping[str, str]) -> Op:
    """Change label, metadata and names (a move to another experiment is a new revision)."""

    def op(service: BenchService) -> OpChanges:
        service.update(datapoint_id, label=label, set_metadata=dict(set_metadata),
                       remove_metadata=list(remove_metadata), ownership=dict(ownership))
        return OpChanges(written=(datapoint_id,), show=datapoint_id, names=bool(ownership))

    return op


def delete_datapoints(ids: Sequence[str]) -> Op:
    """Delete these datapoints (sync carries the deletion; View → Recently deleted undoes)."""
    wanted = tuple(ids)

    def op(service: BenchService) -> OpChanges:
        for datapoint_id in wanted:
            service.delete(datapoint_id)
        return OpChanges(removed=wanted)

    return op


def restore_datapoints(ids: Sequence[str]) -> Op:
    """Bring deleted datapoints back as new revisions (sync pushes them as undeletes)."""
    wanted = tuple(ids)

    def op(service: BenchService) -> OpChanges:
        return OpChanges(written=tuple(service.restore(ident).datapoint_id for ident in wanted))

    return op
