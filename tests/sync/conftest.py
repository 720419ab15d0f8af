"""The sync tests' fixtures (the real servers are shared by the whole run: tests/conftest.py)
and MADSci 0.8.1 in its own venv (see ``tests/support/madsci_env.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.madsci_env import madsci_python  # noqa: F401  (fixture)

from app.service import BenchService
from sync.engine import SyncEngine


@pytest.fixture
def benches(tmp_path: Path, central: Any) -> Iterator[list[tuple[BenchService, SyncEngine]]]:
    """Two benches (services with their sync engines) on one central store."""
    pairs = []
    try:
        for name in ("a", "b"):
            service = BenchService(tmp_path / f"bench-{name}")
            pairs.append((service, SyncEngine(service, central)))
        yield pairs
    finally:
        for service, engine in pairs:
            engine.close()
            service.close()
