"""The names-and-ids mapping every capture path uses (see ``app.core.ids``).

Operators and folder conventions say ``EXP42`` and ``alice``; MADSci's ownership fields hold
ULIDs. An id is derived deterministically from (kind, name) so benches agree offline; this
registry remembers which names this bench has seen (for autocompletion and to show the
name beside the id) and lets a facility pin a name to an id MADSci already assigned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Optional

from app.core.errors import ValidationError
from app.core.ids import (OWNERSHIP_KINDS, id_for, is_ulid, kind_of_field, normalize_name,
                          require_ulid)
from app.core import search
from app.core.store import LocalStore
from app.core.timestamps import now_canonical

#: (kind, name or id) -> id, as :meth:`NameRegistry.lookup`.
NameLookup = Callable[[str, str], str]


#: Custom-metadata keys the bench keeps beside each ownership id (``experiment_name`` ...).
#: They mirror the ownership and are never free metadata: editing one would make the
#: window say one experiment while the id (what queries, filters and sync use) says another.
NAME_KEYS: Final[dict[str, str]] = {f"{kind}_name": kind for kind in OWNERSHIP_KINDS}


def name_key(kind: str) -> str:
    """The metadata key that shows the name beside a kind's id."""
    return f"{kind_of_field(kind)}_name"


def refuse_name_keys(keys: Iterable[str]) -> None:
    """Raise if metadata edits touch a reserved ``<kind>_name`` key, naming the proper way."""
    reserved = sorted({str(key) for key in keys if str(key) in NAME_KEYS})
    if reserved:
        kind = NAME_KEYS[reserved[0]]
        raise ValidationError(
            f"{', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} kept by the bench "
            f"beside the ownership id, not free metadata; change the {kind} itself instead "
            f"(benchdata edit ID --{kind} NAME, update_datapoint(..., ownership={{'{kind}': "
            f"NAME}}), or the Edit dialog's \"Belongs to\" fields)")


def check_name_keys(metadata: Mapping[str, str], ids: Mapping[str, Optional[str]],
                    lookup: NameLookup) -> None:
    """At capture, a ``<kind>_name`` a client sends must name the id it sends.

    ``ids`` maps ``<kind>_id`` fields to ids; ``lookup`` is :meth:`NameRegistry.lookup`.
    A name without an id, or naming another id, would show one experiment while the row
    belongs to another, so it is refused with the proper way to say it.
    """
    for key, kind in NAME_KEYS.items():
        name = metadata.get(key)
        if name is None:
            continue
        ident = ids.get(f"{kind}_id")
        if ident is None or not isinstance(name, str) or not _names_id(kind, name, ident, lookup):
            raise ValidationError(
                f"custom_metadata {key}={name!r} does not name the datapoint's {kind} "
                f"(ownership_info.{kind}_id = {ident or 'none'}); give the {kind} as ownership "
                f"(ownership_info.{kind}_id, a name or ULID through ownership({kind}=...), or "
                f"--{kind} on the command line) and the bench adds {key} itself")


def _names_id(kind: str, name: str, ident: str, lookup: NameLookup) -> bool:
    """Whether ``name`` is this bench's name for ``ident`` (pinned or derived)."""
    ident = ident.upper()
    return lookup(kind, name) == ident or id_for(kind, name) == ident


class NameRegistry:
    """(kind, name) → ULID, persisted in the store's ``names`` table."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._by_id: dict[tuple[str, str], str] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._load()

    def _load(self) -> None:
        with self._store.reader() as conn:
            for kind, name, canonical, ident in conn.execute(
                "SELECT kind, name, canonical, id FROM names"
            ):
                self._by_id.setdefault((kind, ident), name)
                self._by_name[(kind, canonical)] = ident

    def resolve(self, kind: str, name_or_id: str) -> str:
        """The id for a name (remembering it) — or the id itself if given a ULID."""
        kind = kind_of_field(kind)
        if is_ulid(name_or_id):
            return name_or_id.upper()
        canonical = normalize_name(name_or_id)
        with self._lock:
            known = self._by_name.get((kind, canonical))
            if known is not None:
                return known
        ident = id_for(kind, name_or_id)
        self._remember(kind, name_or_id.strip(), canonical, ident)
        return ident

    def lookup(self, kind: str, name_or_id: str) -> str:
        """Like :meth:`resolve` but never writes: for queries, which must not remember
        every name someone searched for."""
        kind = kind_of_field(kind)
        if is_ulid(name_or_id):
            return name_or_id.upper()
        with self._lock:
            known = self._by_name.get((kind, normalize_name(name_or_id)))
        return known if known is not None else id_for(kind, name_or_id)

    def pin(self, kind: str, name: str, ident: str) -> None:
        """Map a name to an existing id (e.g. one MADSci's experiment manager assigned)."""
        kind = kind_of_field(kind)
        require_ulid(ident, f"{kind} id")
        canonical = normalize_name(name)
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO names (kind, name, canonical, id, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, canonical) DO UPDATE SET id = excluded.id, name = excluded.name",
                (kind, name.strip(), canonical, ident.upper(), now_canonical()),
            )
            # Rows of that id are now also found by the pinned name.
            search.reindex_owned_by(conn, f"{kind}_id", ident.upper())
        with self._lock:
            self._by_name[(kind, canonical)] = ident.upper()
            self._by_id[(kind, ident.upper())] = name.strip()

    def _remember(self, kind: str, name: str, canonical: str, ident: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO names (kind, name, canonical, id, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, canonical) DO NOTHING",
                (kind, name, canonical, ident, now_canonical()),
            )
        with self._lock:
            self._by_name[(kind, canonical)] = ident
            self._by_id.setdefault((kind, ident), name)

    def name_for(self, kind: str, ident: str) -> Optional[str]:
        with self._lock:
            return self._by_id.get((kind_of_field(kind), ident.upper()))

    def names(self, kind: str) -> list[tuple[str, str]]:
        """(name, id) pairs this bench knows for a kind, sorted by name."""
        kind = kind_of_field(kind)
        with self._lock:
            pairs = [(name, ident) for (k, ident), name in self._by_id.items() if k == kind]
        return sorted(pairs, key=lambda pair: pair[0].casefold())
