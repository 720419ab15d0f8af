"""A real X11 screen for end-to-end tests of the window: Debian's ``Xvfb`` (installed by
``.ci/run``), on a display number it picks itself (``-displayfd``), so runs never clash."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def require_xvfb() -> str:
    """Xvfb's path; skipped where it is missing, but a failure under CI, which installs it."""
    found = shutil.which("Xvfb")
    if found is None:
        message = "Xvfb is not installed (apt-get install xvfb; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def x11_display() -> Iterator[str]:
    """``:N`` of a fresh Xvfb screen, stopped after the test."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [require_xvfb(), "-displayfd", str(write_end), "-screen", "0", "1280x800x24",
         "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()  # blocks until Xvfb accepts clients
        if not number:
            pytest.fail(f"Xvfb exited with status {server.wait(timeout=10)} before it was ready")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)
