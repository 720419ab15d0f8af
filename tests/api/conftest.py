"""Fixtures for the REST API tests: a real uvicorn server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from pathlib import Path

import httpx
import pytest

from app.api.server import ApiServer
from app.service import BenchService
from tests.support.madsci_env import madsci_python  # noqa: F401  (the fixture)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "bench") as bench:
        yield bench


@pytest.fixture
def batch_sizes(service: BenchService) -> list[int]:
    """The size of each ``service.submit_many`` call from now on (the group committer's
    batches); the calls still go through."""
    sizes: list[int] = []
    real_submit_many = service.submit_many

    def spy(datapoints: Any, **kwargs: Any) -> Any:
        sizes.append(len(datapoints))
        return real_submit_many(datapoints, **kwargs)

    service.submit_many = spy  # type: ignore[method-assign]
    return sizes


@pytest.fixture
def server(service: BenchService) -> Iterator[ApiServer]:
    with ApiServer(service, port=0) as api:
        yield api


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
