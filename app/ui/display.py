"""Can this process open a window? Answered before Qt is asked, because Qt cannot say no.

When Qt's platform plugin cannot start (no display, an X server that is not there, a
system library the xcb plugin needs is missing) Qt prints a few lines and calls
``abort()``: exit status 134 and a core dump, with no hint that ``benchdata run`` captures
without a window. So the window's start-up asks the same questions first and, when the
answer is no, says so in one sentence and exits 1.

Only Linux/X11 is checked: Windows and macOS always have their platform plugin, Wayland
sessions are left to Qt, and an explicit ``QT_QPA_PLATFORM`` (offscreen, vnc …) is the
user's choice.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

HEADLESS_HINT = ("To capture without a window (watched folders, the REST API, sync), run "
                 "'benchdata run' instead; see docs/operations.md.")

#: The shared libraries of the xcb plugin that a minimal Debian desktop may lack, by the
#: Debian package that ships each (the names Qt's own message and the README use).
_DEBIAN_PACKAGE_OF: dict[str, str] = {
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
_XCB_LIBRARY = re.compile(r"^lib(xcb(?:-[a-z0-9]+)*)\.so\.(\d+)$")


def debian_package_for(library: str) -> str:
    """The Debian package that ships a shared library the xcb plugin needs
    (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``); the library's own name when unknown."""
    if library in _DEBIAN_PACKAGE_OF:
        return _DEBIAN_PACKAGE_OF[library]
    match = _XCB_LIBRARY.match(library)
    if match:
        stem, version = match.groups()
        return f"lib{stem}{version}"
    return library


def display_problem(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """One sentence saying why no window can open here, or None when it should."""
    env = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux"):
        return None
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform and platform != "xcb":
        return None  # offscreen, wayland, vnc …: chosen on purpose
    display = env.get("DISPLAY", "")
    if not platform and not display and env.get("WAYLAND_DISPLAY"):
        return None  # a Wayland session: Qt picks its wayland plugin
    if not display:
        return f"There is no display to open the window on (DISPLAY is not set). {HEADLESS_HINT}"
    if not x_server_answers(display):
        return (f"The X display {display!r} does not answer (is the desktop session "
                f"running?). {HEADLESS_HINT}")
    missing = missing_xcb_libraries()
    if missing:
        packages = " ".join(sorted({debian_package_for(name) for name in missing}))
        return (f"The window needs system libraries that are not installed: "
                f"{', '.join(missing)}. On Debian or Ubuntu: sudo apt-get install {packages}. "
                f"{HEADLESS_HINT}")
    return None


def x_server_answers(display: str, timeout_s: float = 2.0) -> bool:
    """Whether something listens where ``DISPLAY`` points (unix socket, abstract socket or
    TCP 6000+N); an unparsable value is left to Qt."""
    match = re.match(r"^(?P<host>[^:]*):(?P<number>\d+)(?:\.\d+)?$", display)
    if match is None:
        return True
    host, number = match.group("host"), int(match.group("number"))
    if host in ("", "unix"):
        for address in (f"\0/tmp/.X11-unix/X{number}", f"/tmp/.X11-unix/X{number}"):
            if _connects(socket.AF_UNIX, address, timeout_s):
                return True
        return False
    return _connects(socket.AF_INET, (host, 6000 + number), timeout_s)


def _connects(family: int, address: object, timeout_s: float) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout_s)
            probe.connect(address)  # type: ignore[arg-type]
        return True
    except (OSError, ValueError):
        return False


def missing_xcb_libraries() -> list[str]:
    """Shared libraries the xcb platform plugin links against that the dynamic linker
    cannot find (``ldd`` lists every one; without it, the first that ``dlopen`` names)."""
    plugin = _xcb_plugin()
    if plugin is None:
        return []
    ldd = shutil.which("ldd")
    if ldd is not None:
        try:
            listing = subprocess.run([ldd, str(plugin)], capture_output=True, text=True,
                                     timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            listing = ""
        missing = [line.split("=>")[0].strip() for line in listing.splitlines()
                   if "not found" in line]
        return sorted(set(missing))
    import ctypes

    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        match = re.match(r"^(\S+\.so[.\d]*): cannot open shared object file", str(exc))
        return [match.group(1)] if match else []
    return []


def _xcb_plugin() -> Optional[Path]:
    try:
        from PySide6.QtCore import QLibraryInfo
    except ImportError:
        return None
    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    plugin = plugins / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None
