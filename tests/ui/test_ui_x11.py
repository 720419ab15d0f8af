"""End to end on a real X11 screen (Xvfb + openbox, driven by xdotool): closing the window
with a real close event leaves capture running in its own process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.servers import free_port
from tests.support.waiting import wait_until
from tests.ui.x11 import x11_display  # noqa: F401 - a fixture

from app.admin.lock import read_holder
from app.core.paths import bench_paths
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux's")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _start_window_manager(openbox: str, xdotool: str,
                          env: dict[str, str]) -> subprocess.Popen[bytes]:
    """openbox, once it answers for the screen (activating a window needs it)."""
    manager = subprocess.Popen([openbox], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run([xdotool, "get_desktop"], env=env, capture_output=True,
                                 check=False).returncode == 0, 30, "the window manager")
    return manager


def test_closing_the_window_leaves_capture_running(tmp_path: Path, x11_display: str) -> None:
    xdotool, openbox = _tool("xdotool"), _tool("openbox")
    home, folder = tmp_path / "home", tmp_path / "instrument"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "BENCHDATA_GUI_SMOKE", "BENCHDATA_GUI_CAPTURE")}
    env.update(BENCHDATA_HOME=str(home), DISPLAY=x11_display,
               BENCHDATA_API_PORT=str(free_port()))
    subprocess.run([sys.executable, "-m", "app", "watch", "add", str(folder), "--quiet", "1"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    manager = _start_window_manager(openbox, xdotool, env)
    window_output = (tmp_path / "window.out").open("wb")
    window = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT,
                              stdout=window_output, stderr=subprocess.STDOUT)
    paths = bench_paths(home / "data")
    service_pid = 0
    try:
        # The window starts the capture service as a process of its own and attaches to it.
        holder = wait_until(lambda: (h := read_holder(paths)) and "watch" in
                       (h.get("components") or []) and h, 60, "the capture service")
        service_pid = int(holder["pid"])
        assert service_pid != window.pid
        found = wait_until(lambda: subprocess.run(
            [xdotool, "search", "--onlyvisible", "--name", "^Bench Data Manager$"], env=env,
            capture_output=True, text=True, check=False).stdout.split(), 60, "the window")
        _skip_welcome(xdotool, env)
        # A real close: the window manager's close key sends WM_DELETE_WINDOW to the window.
        subprocess.run([xdotool, "windowactivate", "--sync", found[0], "key", "--clearmodifiers",
                        "alt+F4"], env=env, check=True, timeout=30)
        assert window.wait(timeout=30) == 0, (tmp_path / "window.out").read_text()[-2000:]

        instrument_time = time.time() - 3600  # the instrument wrote it an hour ago
        written = folder / "after-close.csv"
        written.write_text("t,v\n1,2\n", encoding="utf-8")
        os.utime(written, (instrument_time, instrument_time))
        with BenchService(home / "data") as bench:
            captured = wait_until(lambda: bench.query({"data_type": "file"}).items, 30,
                             "the service to capture the file written after the close")
        assert len(captured) == 1
        source_mtime = captured[0].custom_metadata["source_mtime"]
        assert source_mtime.startswith(time.strftime("%Y-%m-%dT%H:%M:%S",
                                                     time.gmtime(instrument_time)))
        assert os.kill(service_pid, 0) is None  # still running
    finally:
        if window.poll() is None:
            window.kill()
            window.wait(timeout=10)
        window_output.close()
        if service_pid:
            os.kill(service_pid, signal.SIGTERM)
            wait_until(lambda: read_holder(paths) is None or not _alive(service_pid), 30,
                  "the service to stop")
        manager.terminate()
        manager.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _window_id(xdotool: str, env: dict[str, str], title: str, timeout_s: float = 60) -> str:
    return wait_until(lambda: subprocess.run(
        [xdotool, "search", "--onlyvisible", "--name", f"^{title}$"], env=env,
        capture_output=True, text=True, check=False).stdout.split(), timeout_s, title)[0]


def _skip_welcome(xdotool: str, env: dict[str, str]) -> None:
    """Skip the first start's welcome as an operator would. It opens just after the window,
    and on a loaded machine late enough to take the focus (or the drop) meant for it."""
    welcome = _window_id(xdotool, env, "Welcome to Bench Data Manager")
    subprocess.run([xdotool, "windowactivate", "--sync", welcome, "key", "Escape"], env=env,
                   check=True, timeout=30)
    wait_until(lambda: not subprocess.run(
        [xdotool, "search", "--onlyvisible", "--name", "^Welcome to Bench Data Manager$"],
        env=env, capture_output=True, text=True, check=False).stdout.split(), 30,
        "the welcome to close")


def _center(xdotool: str, env: dict[str, str], window_id: str) -> tuple[int, int]:
    shell = subprocess.run([xdotool, "getwindowgeometry", "--shell", window_id], env=env,
                           capture_output=True, text=True, check=True).stdout
    facts = dict(line.split("=", 1) for line in shell.split())
    return (int(facts["X"]) + int(facts["WIDTH"]) // 2,
            int(facts["Y"]) + int(facts["HEIGHT"]) // 2)


def test_a_real_xdnd_drag_from_another_program_is_captured(tmp_path: Path,
                                                           x11_display: str) -> None:
    """Another X client drags a file onto the window (XDND), driven by xdotool's real
    pointer events; the capture dialog opens and Return hands the file to the capture
    queue panel, which captures it."""
    xdotool, openbox = _tool("xdotool"), _tool("openbox")
    home = tmp_path / "home"
    dropped = tmp_path / "spectrum-7.csv"
    dropped.write_text("nm,abs\n400,0.1\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM",
                                                           "BENCHDATA_GUI_SMOKE")}
    env.update(BENCHDATA_HOME=str(home), DISPLAY=x11_display, BENCHDATA_GUI_CAPTURE="window",
               BENCHDATA_API_PORT=str(free_port()))
    manager = _start_window_manager(openbox, xdotool, env)
    window = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    source = subprocess.Popen([sys.executable, str(Path(__file__).parent / "x11_helpers" /
                                                   "drag_source.py"), str(dropped)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        target_id = _window_id(xdotool, env, "Bench Data Manager")
        _skip_welcome(xdotool, env)
        source_id = _window_id(xdotool, env, "benchdata-test-drag-source")
        subprocess.run([xdotool, "windowmove", "--sync", source_id, "0", "0"], env=env,
                       check=True, timeout=30)
        subprocess.run([xdotool, "windowmove", "--sync", target_id, "260", "40"], env=env,
                       check=True, timeout=30)
        (sx, sy), (tx, ty) = _center(xdotool, env, source_id), _center(xdotool, env, target_id)
        steps = [[ "mousemove", str(sx + (tx - sx) * k // 10), str(sy + (ty - sy) * k // 10),
                   "sleep", "0.05"] for k in range(1, 11)]
        subprocess.run([xdotool, "mousemove", str(sx), str(sy), "sleep", "0.2", "mousedown",
                        "1", "sleep", "0.2", *sum(steps, []), "sleep", "0.3", "mouseup", "1"],
                       env=env, check=True, timeout=60)
        dialog_id = _window_id(xdotool, env, "Capture files", timeout_s=30)
        subprocess.run([xdotool, "windowactivate", "--sync", dialog_id, "key", "Return"],
                       env=env, check=True, timeout=30)
        with BenchService(home / "data") as bench:
            captured = wait_until(lambda: bench.query({"data_type": "file"}).items, 30,
                             "the dropped file to be captured")
        assert [dp.filename for dp in captured] == ["spectrum-7.csv"]
        assert captured[0].size_bytes == dropped.stat().st_size
    finally:
        for process in (source, window, manager):
            process.terminate()
            process.wait(timeout=30)
