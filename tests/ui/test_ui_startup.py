"""``python -m app`` opens the window: with no central store, and with a dead one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port

from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]


def start(home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BENCHDATA_HOME=str(home), QT_QPA_PLATFORM="offscreen",
               BENCHDATA_GUI_SMOKE="1", BENCHDATA_API_PORT=str(free_port()))
    return subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


def test_python_m_app_opens_the_window_without_a_central_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BENCHDATA_HOME", str(home))
    with BenchService() as service:
        service.capture_value({"x": 1}, label="one")
    result = start(home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "window ready: 1 datapoint(s)" in result.stdout
    # The window keeps its own rotating log (Help → Show logs), apart from the service's.
    assert "started" in (home / "data" / "logs" / "window.log").read_text(encoding="utf-8")


def test_python_m_app_opens_the_window_with_an_unreachable_central_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.settings import CentralSettings, save_settings

    home = tmp_path / "home"
    monkeypatch.setenv("BENCHDATA_HOME", str(home))
    with BenchService() as service:
        service.capture_value({"x": 1}, label="one")
        save_settings(service.paths, CentralSettings(
            preset="seaweedfs", endpoint=f"127.0.0.1:{free_port()}", bucket="b", access_key="a",
            secret_key="s", mongo_url=f"mongodb://127.0.0.1:{free_port()}", timeout_s=2.0))
    result = start(home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "window ready: 1 datapoint(s)" in result.stdout
