"""MADSci 0.8.1's own data-server and data-client tests, run against the bench.

The tests come from madsci-data-manager 0.8.1's source distribution on PyPI (it ships
``tests/``), cached beside the MADSci venv. They run with the venv's pytest in a
subprocess, with ``conftest_adapter.py`` as their conftest: it replaces only the fixtures
that start MADSci's server (and its Docker object storage) with a real ``benchdata run``
API server over HTTP (and the repo's SeaweedFS). This test fails on any failure, error,
unexpected skip or unexpected pass (the adapter's expected failures are strict).

Under ``CI=true`` an environment that cannot be built is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

import pytest

from tests.support.madsci_env import (
    MADSCI_VERSION,
    IndexUnreachable,
    _build_lock,
    cache_root,
    ensure_suite_venv,
    unavailable,
)
from tests.support.servers import SeaweedServer

ROOT: Final[Path] = Path(__file__).resolve().parents[2]
ADAPTER: Final[Path] = Path(__file__).with_name("conftest_adapter.py")
BRIDGE: Final[Path] = Path(__file__).with_name("app_client_bridge.py")
SDIST: Final[str] = f"madsci-data-manager=={MADSCI_VERSION}"
#: The suite files that exercise the data server and the data client.
SUITE_FILES: Final[tuple[str, ...]] = ("test_data_server.py", "test_data_client.py")
SUITE_TIMEOUT_S: Final[int] = 900


def madsci_tests_dir(python: Path) -> Path:
    """The ``tests/`` of madsci-data-manager's sdist, downloaded once into the cache."""
    target = cache_root() / f"madsci-data-manager-{MADSCI_VERSION}-tests"
    stamp = target / ".complete"
    if stamp.is_file():
        return target
    with _build_lock(target):
        if stamp.is_file():
            return target
        with tempfile.TemporaryDirectory(prefix="madsci-sdist-") as download:
            result = subprocess.run(
                [str(python), "-m", "pip", "download", "--disable-pip-version-check",
                 "--no-deps", "--no-binary", ":all:", "--dest", download, SDIST],
                capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise IndexUnreachable(f"pip download {SDIST} failed:\n{result.stderr[-2000:]}")
            (archive,) = Path(download).glob("*.tar.gz")
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            with tarfile.open(archive) as sdist:
                for member in sdist.getmembers():
                    parts = Path(member.name).parts
                    if len(parts) == 3 and parts[1] == "tests" and member.isfile():
                        source = sdist.extractfile(member)
                        assert source is not None
                        (target / parts[2]).write_bytes(source.read())
        stamp.write_text(SDIST, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def suite_python() -> Path:
    try:
        return ensure_suite_venv()
    except IndexUnreachable as exc:
        unavailable(f"the MADSci {MADSCI_VERSION} venv cannot be built: {exc}")
        raise


def run_suite(python: Path, tests: Path, workdir: Path, seaweed: SeaweedServer,
              extra_env: dict[str, str] | None = None,
              files: tuple[str, ...] = SUITE_FILES) -> dict[str, tuple[str, str]]:
    """Run the adapted suite; each test's outcome and message by ``file::name``."""
    suite = workdir / "suite"
    suite.mkdir()
    for name in SUITE_FILES:
        shutil.copy(tests / name, suite / name)
    shutil.copy(ADAPTER, suite / "conftest.py")
    shutil.copy(BRIDGE, suite / BRIDGE.name)
    host, port = seaweed.endpoint.split(":")
    s3 = {"host": host, "port": int(port), "endpoint": seaweed.endpoint,
          "url": f"http://{seaweed.endpoint}", "access_key": seaweed.access_key,
          "secret_key": seaweed.secret_key}
    env = {**os.environ, "BENCH_PYTHON": sys.executable, "BENCH_PYTHONPATH": str(ROOT),
           "BENCH_S3": json.dumps(s3), **(extra_env or {})}
    env.pop("PYTHONPATH", None)  # the MADSci venv must not import our checkout
    report = workdir / "report.xml"
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "addopts=", "--durations=8", f"--junitxml={report}", "--basetemp", str(workdir / "tmp"),
         *files],
        cwd=suite, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
    print(result.stdout[-6000:])  # shown with -s and on failure: durations, summary
    if not report.exists():
        raise AssertionError(f"MADSci's suite did not run:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}")
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        key = f"{case.get('file') or case.get('classname', '').split('.')[0] + '.py'}::" \
              f"{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "")[:300]
                if child.tag == "skipped" and child.get("type") == "pytest.xfail":
                    outcome = "xfailed"
        outcomes[key] = (outcome, message)
    return outcomes


@pytest.fixture(scope="module")
def madsci_tests(suite_python: Path) -> Path:
    try:
        return madsci_tests_dir(suite_python)
    except IndexUnreachable as exc:
        unavailable(str(exc))
        raise


def _assert_all_passed(outcomes: dict[str, tuple[str, str]], at_least: int) -> None:
    for key, (outcome, message) in sorted(outcomes.items()):
        print(f"{outcome:8} {key} {message[:120]}")
    bad = {key: value for key, value in outcomes.items()
           if value[0] not in ("passed", "xfailed")}
    assert len(outcomes) >= at_least, f"too few of MADSci's tests ran: {sorted(outcomes)}"
    assert not bad, "MADSci's own tests against the bench:\n" + "\n".join(
        f"{key}: {outcome} {message}" for key, (outcome, message) in sorted(bad.items()))


def test_madsci_data_suites_pass_against_the_bench(suite_python: Path, madsci_tests: Path,
                                                   seaweed: SeaweedServer,
                                                   tmp_path: Path) -> None:
    outcomes = run_suite(suite_python, madsci_tests, tmp_path, seaweed)
    _assert_all_passed(outcomes, at_least=28)


def test_madsci_data_client_test_bodies_pass_on_app_dataclient(
        suite_python: Path, madsci_tests: Path, seaweed: SeaweedServer,
        tmp_path: Path) -> None:
    outcomes = run_suite(suite_python, madsci_tests, tmp_path, seaweed,
                         extra_env={"BENCH_CLIENT": "app"}, files=("test_data_client.py",))
    _assert_all_passed(outcomes, at_least=9)
