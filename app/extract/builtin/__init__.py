"""The built-in extractors; each imports its library only inside ``extract`` so a missing
library is reported on the datapoint ("… is not installed") instead of breaking the rest."""

from __future__ import annotations

from pathlib import Path


def suffix(path: Path) -> str:
    return path.suffix.lower()


def text_of(value: object) -> str:
    """Attribute values as text: bytes decoded, one-element arrays unwrapped."""
    if hasattr(value, "tolist"):
        value = value.tolist()  # numpy scalars and arrays
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
