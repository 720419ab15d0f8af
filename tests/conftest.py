"""Shared fixtures: every test gets its own bench home, never the user's real one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import DataClient
# The real central servers (SeaweedFS + nx-27017), session-scoped: declared once here so
# that the whole run shares one pair (tests/support/servers.py).
from tests.support.servers import central, mongo, private_central, seaweed  # noqa: F401

EXP = "01JD3Q9V6X5J8Z0K2M4N6P8R0T"

# Never the developer's real keyring (and never one shared between parallel test runs):
# without this, saving settings in a test would write "benchdata-central" secrets into the
# desktop's keyring, or into keyrings.alt's one file that every test process shares. Tests
# that exercise a keyring install their own backend with ``keyring.set_keyring``.
# Subprocesses (benches, the CLI) inherit it.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"


@pytest.fixture(autouse=True)
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point BENCHDATA_HOME at a fresh folder so nothing touches the real data dir."""
    home = tmp_path / "benchhome"
    monkeypatch.setenv("BENCHDATA_HOME", str(home))
    # Nor the machine's facility settings (tests that provision write this file).
    monkeypatch.setenv("BENCHDATA_SITE_CONFIG", str(tmp_path / "site-config.json"))
    return home


#: The product's own loggers (one per module, ``logging.getLogger(__name__)``).
APP_LOGGERS = ("app", "sync")


class _ErrorRecords(logging.Handler):
    """Keeps the ERROR (and worse) records the product logs during one test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """An ERROR the product logs fails the test, unless the test expects it: marked
    ``@pytest.mark.allow_error_logs`` (it provokes failures on purpose), or it takes
    ``caplog`` and checks the log itself. An unexpected error log is a bug that would
    otherwise only show as noise in an operator's log."""
    handler = _ErrorRecords()
    loggers = [logging.getLogger(name) for name in APP_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    allowed = (request.node.get_closest_marker("allow_error_logs") is not None
               or "caplog" in request.fixturenames)
    if handler.records and not allowed:
        lines = "\n".join(f"  {r.name}: {r.getMessage()}"
                          + (f" ({r.exc_info[1]!r})" if r.exc_info and r.exc_info[1] else "")
                          for r in handler.records[:10])
        pytest.fail(f"the product logged {len(handler.records)} unexpected error(s) "
                    f"(mark the test allow_error_logs if it provokes them):\n{lines}",
                    pytrace=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataClient]:
    with DataClient(data_dir=tmp_path / "store") as data_client:
        yield data_client


@pytest.fixture
def run_txt(tmp_path: Path) -> Path:
    path = tmp_path / "run.txt"
    path.write_text("line 1\nline 2\n", encoding="utf-8")
    return path


def pytest_configure(config: pytest.Config) -> None:
    # Qt tests (later) run without a display.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
