"""``python -m app`` opens the window: with no central store, and with a dead one."""

from __future__ import annotations

import os
import subprocess
import time
import sys
from pathlib import Path

import pytest
from tests.support.servers import free_port

from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]


def start(home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BENCHDATA_HOME=str(home), QT_QPA_PLATFORM="offscreen",
               BENCHDATA_GUI_SMOKE="1", BENCHDATA_API_PORT=str(free_port()),
               BENCHDATA_GUI_CAPTURE="window")  # hosted here: nothing outlives the test
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


def _start_without_platform(home: Path, **env_changes: str) -> subprocess.CompletedProcess[str]:
    """``python -m app`` as on a desktop: no QT_QPA_PLATFORM, the display from ``env_changes``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(BENCHDATA_HOME=str(home), BENCHDATA_GUI_SMOKE="1",
               BENCHDATA_API_PORT=str(free_port()), BENCHDATA_GUI_CAPTURE="window",
               **env_changes)
    return subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux's")
def test_without_a_display_python_m_app_says_so_and_points_to_benchdata_run(
        tmp_path: Path) -> None:
    """An SSH session: Qt would abort with exit 134 and a core dump."""
    result = _start_without_platform(tmp_path / "home")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.startswith("error: There is no display"), result.stderr
    assert "benchdata run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux's")
def test_a_display_that_does_not_answer_is_named(tmp_path: Path) -> None:
    number = 900 + os.getpid() % 50  # an X display nobody runs
    result = _start_without_platform(tmp_path / "home", DISPLAY=f":{number}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"':{number}' does not answer" in result.stderr
    assert "benchdata run" in result.stderr


@pytest.mark.parametrize(("library", "package"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libsomething.so.3", "libsomething.so.3"),
])
def test_missing_libraries_are_named_by_their_debian_package(library: str, package: str) -> None:
    from app.ui.display import debian_package_for

    assert debian_package_for(library) == package


def test_an_explicit_platform_or_a_wayland_session_is_left_to_qt() -> None:
    from app.ui.display import display_problem

    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None


from tests.ui.x11 import x11_display  # noqa: E402,F401 - a fixture


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux's")
def test_python_m_app_opens_on_a_real_x11_screen(tmp_path: Path, x11_display: str) -> None:
    """With the system libraries the README lists, the xcb plugin loads and the window opens;
    on a machine without them the check names them (measured here before they were installed:
    'libxcb-icccm.so.4, libxcb-keysyms.so.1 … apt-get install libxcb-icccm4 libxcb-keysyms1')."""
    result = _start_without_platform(tmp_path / "home", DISPLAY=x11_display)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "window ready: 0 datapoint(s)" in result.stdout


def test_a_second_start_raises_the_first_window_instead_of_opening_another(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(os.environ, BENCHDATA_HOME=str(home), QT_QPA_PLATFORM="offscreen",
               BENCHDATA_API_PORT=str(free_port()), BENCHDATA_GUI_CAPTURE="window")
    env.pop("BENCHDATA_GUI_SMOKE", None)
    first = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    window_log = home / "data" / "logs" / "window.log"

    def logged(text: str) -> bool:
        return window_log.exists() and text in window_log.read_text(encoding="utf-8")

    try:
        deadline = time.monotonic() + 60
        while not logged("a second start raises it"):
            assert first.poll() is None, "the first window exited"
            assert time.monotonic() < deadline, "the first window never got ready"
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "app"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 0, second.stderr[-2000:]
        assert "already open on this store" in second.stdout
        deadline = time.monotonic() + 20
        while not logged("a second start asked this window to come to the front"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert first.poll() is None  # the first window is still open
    finally:
        first.terminate()
        first.wait(timeout=30)
