"""The sync states a datapoint moves through: the one vocabulary the store, the sync engine,
the window, the CLI and the filters share.

A local write, edit or delete sets a row ``pending``; the sync engine owns every state after
that (``sync/outbox.py``) and mirrors it onto the row. Only ``confirmed`` means the central
copy has been read back as written; ``quarantined`` means the central store refused it and
a person must look. Everything else is "not yet safe centrally".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class SyncState(StrEnum):
    PENDING = "pending"          # only on this bench; waiting for the engine
    UPLOADING = "uploading"      # the file is being copied to object storage
    UPLOADED = "uploaded"        # the file is uploaded and verified; no record yet
    RECORDED = "recorded"        # the record is written but not yet read back as written
    CONFIRMED = "confirmed"      # the central record read back as written: safe
    QUARANTINED = "quarantined"  # refused by the central store: needs a person


#: States the engine still works on (the outbox's queue).
ACTIVE_STATES: Final[tuple[SyncState, ...]] = (
    SyncState.PENDING, SyncState.UPLOADING, SyncState.UPLOADED, SyncState.RECORDED)
#: States whose data is not yet safe in the central store ("Not yet synced").
UNSAFE_STATES: Final[tuple[SyncState, ...]] = (*ACTIVE_STATES, SyncState.QUARANTINED)
#: States whose data is known safe centrally.
SAFE_STATES: Final[frozenset[str]] = frozenset({SyncState.CONFIRMED})
#: States that need a person.
PROBLEM_STATES: Final[frozenset[str]] = frozenset({SyncState.QUARANTINED})

#: What an operator reads for each state: a short word and a sentence.
DESCRIPTIONS: Final[dict[str, tuple[str, str]]] = {
    SyncState.PENDING: ("Waiting", "Only on this bench; waiting to be synced"),
    SyncState.UPLOADING: ("Uploading", "Being copied to the central store now"),
    SyncState.UPLOADED: ("Uploaded", "File uploaded and verified; record not yet written"),
    SyncState.RECORDED: ("Recording", "Record written; waiting to read it back as written"),
    SyncState.CONFIRMED: ("Synced", "Safe in the central store (verified)"),
    SyncState.QUARANTINED: ("Needs attention",
                            "The central store refused it; see the Sync panel"),
}


#: What a waiting row reads when no central store is configured: nothing is wrong and
#: nothing will happen until one is, so "Waiting" (drawn as a warning) would mislead.
LOCAL_ONLY: Final[tuple[str, str]] = (
    "Local only", "Kept on this bench only: no central store is configured (Settings)")


def describe(state: str, central_configured: bool = True) -> tuple[str, str]:
    """(word, sentence) for a state; a state this version does not know shows as it is."""
    if not central_configured and state in ACTIVE_STATES:
        return LOCAL_ONLY
    return DESCRIPTIONS.get(state, (state.capitalize(), f"Sync state: {state}"))
