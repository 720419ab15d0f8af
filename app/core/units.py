"""How sizes read wherever a person reads them (window, CLI, doctor, messages): binary
units with their IEC names (KiB, MiB, GiB), so "1.0 MiB" means the same bytes everywhere."""

from __future__ import annotations

from typing import Optional

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(size: Optional[int]) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` (size unknown) -> ``""``."""
    if size is None:
        return ""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
