"""File names that are not text: names a file system holds but Unicode cannot spell.

A POSIX file name is bytes. Python hands a name that is not valid UTF-8 (``résultat.csv``
written by a Latin-1 system: ``b'r\\xe9sultat.csv'``) to us as a ``str`` with lone
surrogates (PEP 383 "surrogateescape"), and a Windows name may hold unpaired UTF-16
surrogates. Neither can be stored: SQLite and MongoDB strings must be valid UTF-8. So a
name is kept in three forms (docs/watching.md "File names that are not UTF-8"):

* :func:`readable` — what every stored text field (``filename``, ``path``, labels, custom
  metadata) and every message shows: each undecodable byte as ``\\xNN``
  (``r\\xe9sultat.csv``). Text names are unchanged. Not reversible: for display.
* :func:`raw_metadata` — the exact bytes of the path, base64, in custom metadata under
  :data:`RAW_PATH_KEY`, so nothing is lost.
* :func:`to_key` / :func:`from_key` — a reversible, valid-UTF-8 spelling of a relative
  path, for database keys (the capture ledger). Text paths are their own key.
"""

from __future__ import annotations

import base64
import os
from typing import Final

#: Custom metadata key holding the raw bytes of a captured path that is not UTF-8.
RAW_PATH_KEY: Final = "source_path_b64"
#: Keys of non-text paths start with this; no real relative path does (scandir never
#: yields ".", so "./" cannot begin a path the watcher produces).
_KEY_PREFIX: Final = "./"
_ESCAPED_BYTE: Final = range(0xDC80, 0xDD00)  # surrogateescape's range for bytes 0x80-0xFF


def is_text(name: str) -> bool:
    """True when ``name`` is valid Unicode text (it can be stored as it is)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decoded(name: str) -> str:
    """The name's bytes decoded with surrogateescape: one surrogate per undecodable byte
    (on Windows, too, where ``fsencode`` spells lone surrogates as their UTF-8 bytes)."""
    return os.fsencode(name).decode("utf-8", "surrogateescape")


def readable(name: str) -> str:
    """``name`` as valid text: undecodable bytes shown as ``\\xNN``; text is unchanged."""
    if is_text(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def raw_metadata(path: str) -> dict[str, str]:
    """``{RAW_PATH_KEY: base64 of the path's bytes}`` for a non-text path, else ``{}``."""
    if is_text(path):
        return {}
    return {RAW_PATH_KEY: base64.b64encode(os.fsencode(path)).decode("ascii")}


def to_key(rel_path: str) -> str:
    """A valid-UTF-8, reversible spelling of a relative path (text paths: unchanged).

    Non-text paths become ``./`` + the path with ``\\`` doubled and each undecodable byte
    as ``\\xNN``: distinct from every text path and from each other, and still readable.
    """
    if is_text(rel_path):
        return rel_path
    out = []
    for char in _decoded(rel_path):
        if ord(char) in _ESCAPED_BYTE:
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        else:
            out.append(char)
    return _KEY_PREFIX + "".join(out)


def from_key(key: str) -> str:
    """The relative path :func:`to_key` spelled as ``key``."""
    if not key.startswith(_KEY_PREFIX):
        return key
    text = key[len(_KEY_PREFIX):]
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text.startswith("\\x", index):
            out.append(chr(0xDC00 + int(text[index + 2:index + 4], 16)))
            index += 4
        elif char == "\\":
            out.append("\\")
            index += 2
        else:
            out.append(char)
            index += 1
    return os.fsdecode("".join(out).encode("utf-8", "surrogateescape"))
