"""MADSci 0.8.1 in a virtual environment of its own, for compatibility tests and benchmarks.

MADSci 0.8.1 breaks under pydantic 2.14 (its ``OwnershipInfo`` serializer fails), and its
dependencies must not leak into ours, so its client (and, for the benchmark baseline, its
data manager server) live in a separate venv. It is built once per machine and version and
cached under ``~/.cache/benchdata-tests/madsci-<version>/`` (``BENCHDATA_TEST_CACHE`` moves
the cache root). A lock file makes concurrent test processes wait for one build instead of
racing; a ``.complete`` stamp (holding the requirement list) marks a finished build, so a
half-built venv from a killed run is rebuilt rather than trusted.

Tests use the ``madsci_python`` fixture. It skips — saying so — only when pip cannot reach
the package index at all, and not even then under ``CI=true``: CI must run the
interoperability tests, so there it fails (:func:`unavailable`). Any other build failure
is an error with pip's output.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

MADSCI_VERSION: Final[str] = "0.8.1"
#: One venv holds both: the client for the tests, the server for the benchmark baseline.
REQUIREMENTS: Final[tuple[str, ...]] = (
    f"madsci-client=={MADSCI_VERSION}",
    f"madsci-data-manager=={MADSCI_VERSION}",
    "pydantic<2.12",
)
#: The venv that runs MADSci's own test suites against the bench (tests/madsci_suite/):
#: the same packages plus MADSci's test runner. A venv of its own, so adding a test
#: runner never rebuilds (nor disturbs) the venv other tests are using.
SUITE_REQUIREMENTS: Final[tuple[str, ...]] = (
    *REQUIREMENTS, "pytest>=8,<10", "pytest-asyncio>=0.23,<2")
CACHE_ENV: Final[str] = "BENCHDATA_TEST_CACHE"
#: How long one pip install may take before we call the build failed.
BUILD_TIMEOUT_S: Final[int] = 1200


class IndexUnreachable(RuntimeError):
    """pip cannot reach the package index; the MADSci venv cannot be built here."""


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "benchdata-tests"


def venv_dir() -> Path:
    return cache_root() / f"madsci-{MADSCI_VERSION}"


def suite_venv_dir() -> Path:
    return cache_root() / f"madsci-suite-{MADSCI_VERSION}"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _stamp(venv: Path) -> Path:
    return venv / ".complete"


def _stamp_text(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    return json.dumps({"requirements": list(requirements),
                       "python": list(sys.version_info[:2])})


def _is_complete(venv: Path, requirements: tuple[str, ...] = REQUIREMENTS) -> bool:
    stamp = _stamp(venv)
    return (stamp.is_file() and stamp.read_text(encoding="utf-8") == _stamp_text(requirements)
            and _venv_python(venv).exists())


@contextmanager
def _build_lock(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f"{venv.name}.lock"
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _index_reachable(python: str) -> bool:
    """Can pip fetch one of our requirements from its configured index at all?"""
    with tempfile.TemporaryDirectory(prefix="madsci-probe-") as probe:
        result = subprocess.run(
            [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
             "--retries", "1", "--timeout", "15", "--dest", probe, REQUIREMENTS[0]],
            capture_output=True, text=True, timeout=300,
        )
    return result.returncode == 0


def _build(venv: Path, requirements: tuple[str, ...] = REQUIREMENTS) -> None:
    # Built in place under its final name (venvs are not relocatable); the stamp is
    # written last, so a build that was killed half-way is removed and redone.
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   capture_output=True, text=True, timeout=300)
    python = str(_venv_python(venv))
    result = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    if result.returncode != 0:
        reachable = _index_reachable(python)
        shutil.rmtree(venv, ignore_errors=True)
        if not reachable:
            raise IndexUnreachable(
                "pip cannot reach the package index, so MADSci "
                f"{MADSCI_VERSION} cannot be installed:\n{result.stderr[-2000:]}"
            )
        raise RuntimeError(
            f"building the MADSci {MADSCI_VERSION} venv failed although the index is "
            f"reachable:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    _stamp(venv).write_text(_stamp_text(requirements), encoding="utf-8")


def ensure_venv(venv: Path, requirements: tuple[str, ...]) -> Path:
    """The python of a cached venv holding ``requirements``, building it first if needed."""
    if _is_complete(venv, requirements):
        return _venv_python(venv)
    with _build_lock(venv):
        if not _is_complete(venv, requirements):  # another process may have built it
            _build(venv, requirements)
    return _venv_python(venv)


def ensure_madsci_venv() -> Path:
    """The python of the cached MADSci venv, building it first if needed."""
    return ensure_venv(venv_dir(), REQUIREMENTS)


def ensure_suite_venv() -> Path:
    """The python of the venv that runs MADSci's own test suites (MADSci + pytest)."""
    return ensure_venv(suite_venv_dir(), SUITE_REQUIREMENTS)


def run_madsci(python: Path, script: str, *args: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a script with the MADSci venv's python; raise with its output if it fails."""
    full_env = {**os.environ, **(env or {})}
    # Our own checkout must not shadow madsci's packages (``app``, pydantic ...).
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run([str(python), "-c", script, *args], capture_output=True,
                            text=True, timeout=timeout, env=full_env, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise AssertionError(
            f"MADSci script failed (exit {result.returncode}):\n--- stdout\n"
            f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


try:  # the fixture, when imported under pytest
    import pytest

    def unavailable(reason: str) -> None:
        """MADSci's environment cannot be built here: skip the test, saying why — but
        fail it under ``CI=true``, where a skipped interoperability test would hide that
        the bench was never checked against MADSci."""
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the MADSci {MADSCI_VERSION} interoperability tests, "
                        f"but: {reason}", pytrace=False)
        pytest.skip(reason)

    @pytest.fixture(scope="session")
    def madsci_python() -> Path:
        """The MADSci 0.8.1 venv's python; skips (fails under CI) only if the package
        index is unreachable."""
        try:
            return ensure_madsci_venv()
        except IndexUnreachable as exc:
            unavailable(f"MADSci {MADSCI_VERSION} compatibility tests need the package "
                        f"index: {exc}")
            raise
except ImportError:  # benchmarks import this module without pytest
    pass


if __name__ == "__main__":
    print(ensure_madsci_venv())
