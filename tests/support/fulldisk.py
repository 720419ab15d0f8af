"""A real disk that fills up: a small tmpfs mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN); where that is impossible the test is skipped
with the reason. The test process first moves into a mount namespace of its own
(``unshare(CLONE_NEWNS)``, like ``unshare -m``; possible while it has a single thread),
so its mounts are invisible outside it and vanish with it, even after a kill -9. The mount
sits under the test's own temporary folder and is lazily unmounted when the test ends.
``fill()`` writes a filler file until the kernel answers ENOSPC; ``free()`` deletes it,
and space returns.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CLONE_NEWNS = 0x00020000
#: Big enough for a store, its WAL and a few blobs; small enough to fill in a blink.
DEFAULT_SIZE = "16m"


class FullDisk:
    """A mounted tmpfs at ``root`` that a test fills and frees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler.bin"

    def fill(self, leave_bytes: int = 0) -> None:
        """Write the filler until no space is left (or only about ``leave_bytes``)."""
        chunk = b"\0" * (64 * 1024)
        # Unbuffered: a buffered file would try its leftover bytes again when closed, and
        # raise ENOSPC there, outside the loop that expects it.
        with open(self.filler, "ab", buffering=0) as out:
            while True:
                if leave_bytes and shutil.disk_usage(self.root).free <= leave_bytes:
                    return
                try:
                    out.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        # Page-sized leftovers: fill them byte-wise so not even one SQLite page fits.
        with open(self.filler, "ab", buffering=0) as out:
            for size in (4096, 512, 1):
                while True:
                    try:
                        out.write(b"\0" * size)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        assert shutil.disk_usage(self.root).free == 0

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


_private_namespace: bool | None = None


def _enter_private_mount_namespace() -> bool:
    """Move this process into its own mount namespace (once); False where impossible
    (not Linux, no privilege, or threads already running: then mounts are undone by the
    fixture's teardown instead)."""
    global _private_namespace
    if _private_namespace is None:
        _private_namespace = False
        if sys.platform.startswith("linux") and threading.active_count() == 1:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNS) == 0:
                # Mounts made here must not propagate back to the host's namespace.
                done = subprocess.run(["mount", "--make-rprivate", "/"], check=False,
                                      capture_output=True)
                _private_namespace = done.returncode == 0
    return _private_namespace


def _mount_error(target: Path, size: str) -> str | None:
    if os.name != "posix" or shutil.which("mount") is None:
        return "no mount(8) on this system"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                             str(target)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"cannot mount a tmpfs ({result.stderr.strip() or result.returncode})"
    return None


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    """A 16 MiB tmpfs of the test's own (skipped where mounting is impossible)."""
    root = tmp_path / "smalldisk"
    root.mkdir()
    _enter_private_mount_namespace()
    problem = _mount_error(root, DEFAULT_SIZE)
    if problem:
        pytest.skip(f"a full-disk test needs a real small filesystem: {problem} "
                    "(run as root, or where tmpfs may be mounted)")
    try:
        yield FullDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, capture_output=True)
