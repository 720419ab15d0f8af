"""Helpers shared by the benchmarks: timing statistics, RSS, temporary bench homes."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": round(statistics.median(ordered) * 1000, 3), "p99_ms": round(pick(0.99), 3),
            "max_ms": round(ordered[-1] * 1000, 3)}


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux: ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))


def bench_dir(default_parent: str | None = None) -> Path:
    import tempfile

    parent = default_parent or os.environ.get("BENCH_TMP") or None
    return Path(tempfile.mkdtemp(prefix="benchdata-bench-", dir=parent))
