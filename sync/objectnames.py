"""Object names: one unique, readable key per datapoint, and what a key says.

One key per datapoint: ``<spread>_<ULID>_<sanitised filename>`` (:func:`object_name_for`)
— two files with the same name or label never overwrite each other, the original name
stays visible, there is no ``/`` (MADSci 0.8.1's server puts the object name into a
temporary file's name), and ``<spread>`` (4 hex digits of the ULID's SHA-256) spreads keys
over the bucket's partitions. Older benches wrote ``<prefix><ULID>/<name>``
(:func:`legacy_object_name`); ``sync.rename`` moves those. The user metadata keys an
object carries (SHA-256, datapoint id, file name) are here too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Optional

from sync.settings import CentralSettings

META_SHA256 = "sha256"
META_DATAPOINT = "datapoint-id"
META_FILENAME = "filename"
_MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\/:*?\"<>|]+")


def safe_filename(name: Optional[str], fallback: str = "file") -> str:
    """A filename safe as an object key segment and as a local file name."""
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE.sub("_", text).strip().strip(".")
    if not text:
        text = fallback
    encoded = text.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        stem, dot, suffix = text.rpartition(".")
        suffix = f".{suffix}" if dot and len(suffix.encode()) <= 16 else ""
        keep = encoded[: _MAX_NAME_BYTES - len(suffix.encode())].decode("utf-8", "ignore")
        text = keep + suffix
    return text


#: Hex digits of SHA-256(ULID) that lead an object name (16^4 key ranges).
SPREAD_DIGITS = 4
#: The names this engine writes: spread, ULID, safe file name (never a ``/``).
_OUR_NAME = re.compile(r"[0-9a-f]{%d}_[0-9A-HJKMNP-TV-Z]{26}_[^/]*" % SPREAD_DIGITS)


def object_name_for(settings: CentralSettings, datapoint_id: str, filename: Optional[str]) -> str:
    """``<spread>_<ULID>_<safe file name>``: unique per datapoint, readable, no ``/``.

    S3 partitions a bucket by key prefix; ULIDs begin with their time, so keys that began
    with the ULID (as MADSci's ``<id>_<label>`` do) would all land in the newest key
    range. A short hash of the ULID in front spreads them evenly (``settings`` is kept
    for the signature's sake: the old ``object_prefix`` held a ``/``).
    """
    spread = hashlib.sha256(datapoint_id.encode("ascii")).hexdigest()[:SPREAD_DIGITS]
    return f"{spread}_{datapoint_id}_{safe_filename(filename)}"


def legacy_object_name(settings: CentralSettings, datapoint_id: str,
                       filename: Optional[str]) -> str:
    """The name benches wrote before: ``<object_prefix><ULID>/<safe file name>``."""
    return f"{settings.object_prefix}{datapoint_id}/{safe_filename(filename)}"


def datapoint_id_in(settings: CentralSettings, name: str) -> Optional[str]:
    """The datapoint id in a bench object's name (either form), or None."""
    if _OUR_NAME.fullmatch(name):
        return name.split("_", 2)[1]
    if settings.object_prefix and name.startswith(settings.object_prefix):
        return name[len(settings.object_prefix):].split("/", 1)[0] or None
    return None


def is_bench_object_name(settings: CentralSettings, name: str) -> bool:
    """Whether a key is one a bench wrote (new form, or old under ``object_prefix``)."""
    return bool(_OUR_NAME.fullmatch(name)) or (
        bool(settings.object_prefix) and name.startswith(settings.object_prefix))
