"""The sync tests' fixtures (the real servers are shared by the whole run: tests/conftest.py)
and MADSci 0.8.1 in its own venv (see ``tests/support/madsci_env.py``).

A scenario that takes ``sync_backend`` (or ``bench``, ``engine``, ``benches``, built on it)
runs twice: on the in-memory central store and on SeaweedFS + nx-27017
(``tests/sync/central_stores.py``). Other stores are chosen by parametrizing it
(``pytest.mark.parametrize("sync_backend", [...], indirect=True)``, as the backend
contract adds "tls"); a module of injected faults overrides it with the memory store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.madsci_env import madsci_python  # noqa: F401  (fixture)
from tests.sync.central_stores import KINDS, CentralStore, open_central

from app.service import BenchService
from sync.engine import SyncEngine


@pytest.fixture(params=KINDS)
def sync_backend(request: pytest.FixtureRequest) -> Iterator[CentralStore]:
    """A fresh central store: in memory, then on the real servers."""
    store = open_central(request, request.param)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def benches(tmp_path: Path, sync_backend: CentralStore
            ) -> Iterator[list[tuple[BenchService, SyncEngine]]]:
    """Two benches (services with their sync engines) on one central store."""
    pairs = []
    try:
        for name in ("a", "b"):
            service = BenchService(tmp_path / f"bench-{name}")
            pairs.append((service, sync_backend.engine(service)))
        yield pairs
    finally:
        for service, engine in pairs:
            engine.close()
            service.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "bench") as service:
        yield service


@pytest.fixture
def engine(bench: BenchService, sync_backend: CentralStore) -> Iterator[SyncEngine]:
    """``bench``'s sync engine on the central store."""
    with sync_backend.engine(bench) as sync_engine:
        yield sync_engine

