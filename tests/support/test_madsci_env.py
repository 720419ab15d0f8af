"""The MADSci interoperability tests may skip on a developer's machine without the package
index, but never under CI (tests/support/madsci_env.py)."""

from __future__ import annotations

from tests.support import madsci_env
import pytest
from tests.support.madsci_env import IndexUnreachable, unavailable


def test_without_the_index_a_developer_run_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no index"):
        unavailable("no index")


def test_under_ci_an_unbuildable_environment_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run .*: no index"):
        unavailable("no index")


def test_the_fixture_fails_under_ci_when_the_venv_cannot_be_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> None:
        raise IndexUnreachable("pip cannot reach the package index")

    monkeypatch.setattr(madsci_env, "ensure_madsci_venv", unreachable)
    monkeypatch.setenv("CI", "true")
    build = madsci_env.madsci_python.__wrapped__  # the fixture's function itself
    with pytest.raises(pytest.fail.Exception, match="cannot reach the package index"):
        build()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        build()
