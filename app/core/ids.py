"""ULIDs: new datapoint ids, validation, and ids derived from human names.

MADSci 0.8.1 requires every ownership id to be a ULID, while operators and folder
conventions speak in names (``EXP42``, ``alice``). :func:`name_to_id` is the one mapping
from (kind, name) to an id that every capture path uses. It is deterministic — the first
16 bytes of SHA-256 over a namespaced, normalised name, read as a 128-bit ULID — so two
benches that name the same experiment while offline derive the same id without talking
to each other. Names are compared after Unicode NFC normalisation, trimming and
case-folding: ``EXP42``, ``exp42`` and `` EXP42 `` are one experiment.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Final

from app.core.errors import ValidationError

#: The ownership kinds, in MADSci's field order; field name = f"{kind}_id".
OWNERSHIP_KINDS: Final[tuple[str, ...]] = (
    "user",
    "experiment",
    "campaign",
    "project",
    "node",
    "workcell",
    "lab",
    "step",
    "workflow",
    "manager",
)
OWNERSHIP_FIELDS: Final[tuple[str, ...]] = tuple(f"{kind}_id" for kind in OWNERSHIP_KINDS)

_NAME_NAMESPACE: Final[bytes] = b"benchdata-name-v1\x00"


def new_ulid() -> str:
    """A fresh ULID string (time-ordered, 26 Crockford base32 characters)."""
    # python-ulid loads importlib.metadata, email, socket ...: imported on first use, so
    # modules that only need this one's constants (the CLI's options) start fast.
    from ulid import ULID

    return str(ULID())


_ULID_PATTERN: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)


def is_ulid(value: object) -> bool:
    """True when ``value`` is a 26-character Crockford base32 string that fits 128 bits."""
    return isinstance(value, str) and _ULID_PATTERN.fullmatch(value) is not None


def require_ulid(value: str, what: str = "id") -> str:
    """Return ``value`` unchanged if it is a ULID, else raise a clear ValidationError."""
    if not is_ulid(value):
        raise ValidationError(
            f"{what} must be a ULID (26 characters of 0-9 A-Z without I L O U), got {value!r}"
        )
    return value


def normalize_name(name: str) -> str:
    """The canonical form of a human name used for id derivation."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def kind_of_field(field: str) -> str:
    """``experiment_id`` -> ``experiment``; accepts the bare kind too."""
    kind = field[:-3] if field.endswith("_id") else field
    if kind not in OWNERSHIP_KINDS:
        raise ValidationError(
            f"unknown ownership kind {field!r}; known kinds: {', '.join(OWNERSHIP_KINDS)}"
        )
    return kind


def name_to_id(kind: str, name: str) -> str:
    """The ULID that a (kind, name) pair maps to on every bench, offline or not."""
    kind = kind_of_field(kind)
    canonical = normalize_name(name)
    if not canonical:
        raise ValidationError(f"a {kind} name must not be empty")
    digest = hashlib.sha256(
        _NAME_NAMESPACE + kind.encode() + b"\x00" + canonical.encode("utf-8")
    ).digest()
    from ulid import ULID

    return str(ULID.from_bytes(digest[:16]))


def id_for(kind: str, name_or_id: str) -> str:
    """A ULID is taken as it is (upper-cased); anything else is a name to derive from."""
    if is_ulid(name_or_id):
        return name_or_id.upper()
    return name_to_id(kind, name_or_id)
