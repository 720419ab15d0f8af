"""What a ``doctor`` check says: ``OK`` / ``WARN`` / ``FAIL``, what it found, what to do."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return text + (f"\n      -> {self.fix}" if self.fix and self.status != OK else "")
