"""Helpers shared by the benchmarks: timing statistics, RSS, temporary bench homes, and
running another checkout's code (an exported git revision) beside this one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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
    parent = default_parent or os.environ.get("BENCH_TMP") or None
    return Path(tempfile.mkdtemp(prefix="benchdata-bench-", dir=parent))


def tree_env(tree: Path, **extra: str) -> dict[str, str]:
    """This environment, set up so that a process started in ``tree`` imports ``tree``'s own
    code (``app``, ``sync``, ``tests``) rather than this checkout's or an editable install's.

    PYTHONDONTWRITEBYTECODE is dropped: with it, every start of a fresh checkout compiled
    the whole tree while the interpreter's stdlib stayed compiled (see bench_startup)."""
    inherited = {key: value for key, value in os.environ.items()
                 if key != "PYTHONDONTWRITEBYTECODE"}
    return {**inherited, "PYTHONPATH": str(tree), **extra}


def resolve_revision(rev: str) -> str:
    """The full commit id ``rev`` names in this checkout's repository (ValueError if none)."""
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet",
                           f"{rev}^{{commit}}"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of {ROOT}")
    return done.stdout.strip()


@contextlib.contextmanager
def exported_tree(rev: str) -> Iterator[Path]:
    """The files of commit ``rev`` in a temporary directory (``git archive``: unlike
    ``git worktree add`` it leaves the repository's shared worktree list alone), compiled
    to bytecode so that neither side's first run pays for compiling; removed afterwards."""
    commit = resolve_revision(rev)
    parent = Path(tempfile.mkdtemp(prefix="benchdata-rev-", dir=os.environ.get("BENCH_TMP")))
    tree = parent / commit[:12]
    tree.mkdir()
    try:
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit],
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {commit} failed")
        compile_tree(tree)
        yield tree
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def compile_tree(tree: Path) -> None:
    """Writes the bytecode of ``tree``'s Python packages, as an installed app has it."""
    packages = [str(tree / name) for name in ("app", "sync", "tests", "bench")
                if (tree / name).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages],
                   capture_output=True, check=False)
