"""The capture service as its own process, started by the window when none runs.

Closing the window must not stop capture: an instrument keeps writing into its folder after
the operator closes the window. So the window does not host the watcher, the REST API and
sync itself; it starts ``benchdata run`` on the same store as a process of its own (unless
one already runs: a systemd unit, the Windows task, an earlier window's) and attaches to it.
Stopping capture is then an explicit action (File → Stop capture…), not a side effect of
closing a window.

``BENCHDATA_GUI_CAPTURE=window`` keeps the older arrangement (the window hosts capture
while it is open), for a kiosk that wants capture to end with the window.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from app.admin.lock import is_locked, read_holder
from app.core.paths import BenchPaths

log = logging.getLogger(__name__)

#: ``service`` (default): capture runs in its own process; ``window``: in the window.
CAPTURE_ENV = "BENCHDATA_GUI_CAPTURE"
#: How long the window waits for the service it started to publish its components.
START_TIMEOUT_S = 30.0


def capture_in_own_process() -> bool:
    return os.environ.get(CAPTURE_ENV, "service").strip().lower() != "window"


def service_command(data_dir: Optional[Path]) -> list[str]:
    """How to start ``benchdata run``: the frozen ``benchdata`` beside the frozen window,
    else this interpreter's ``-m app``; ``--data-dir`` only when the window was given one."""
    if getattr(sys, "frozen", False):
        name = "benchdata.exe" if sys.platform == "win32" else "benchdata"
        command = [str(Path(sys.executable).with_name(name))]
    else:
        command = [sys.executable, "-m", "app"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return [*command, "run"]


def start_service_process(data_dir: Optional[Path]) -> subprocess.Popen[bytes]:
    """Start ``benchdata run`` detached from the window: its own session (POSIX) or process
    group (Windows), so closing the window, or its terminal, does not end it."""
    options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                               "stderr": subprocess.DEVNULL, "close_fds": True}
    if sys.platform == "win32":
        options["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                                    | subprocess.DETACHED_PROCESS)  # type: ignore[attr-defined]
    else:
        options["start_new_session"] = True
    command = service_command(data_dir)
    log.info("starting the capture service: %s", " ".join(command))
    return subprocess.Popen(command, **options)  # noqa: S603 - our own executable


def ensure_service(paths: BenchPaths, data_dir: Optional[Path],
                   timeout_s: float = START_TIMEOUT_S) -> Optional[str]:
    """Make sure a capture service runs on this store; None when one does, else one sentence
    saying why not (the window then captures itself while it is open)."""
    if is_locked(paths) is not None:
        return None  # one runs already (a unit, the scheduled task, another window's)
    try:
        process = start_service_process(data_dir)
    except OSError as exc:
        return f"The capture service could not be started ({exc}); this window captures " \
               "while it is open."
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        holder = read_holder(paths)
        if holder and holder.get("components") is not None:
            return None
        if process.poll() is not None:
            holder = read_holder(paths)
            if holder and holder.get("pid") != process.pid:
                return None  # another start won the race; attach to that one
            return (f"The capture service stopped at once (exit status {process.returncode}; "
                    "see Help → Show logs); this window captures while it is open.")
        time.sleep(0.1)
    return ("The capture service did not get ready in time (see Help → Show logs); this "
            "window captures while it is open.")


def stop_service(holder: dict[str, Any]) -> None:
    """Ask the service to stop as ``benchdata run`` stops on Ctrl+C or from systemd."""
    pid = int(holder.get("pid") or 0)
    if pid <= 0 or pid == os.getpid():
        raise ProcessLookupError("no capture service process to stop")
    os.kill(pid, signal.SIGTERM)
