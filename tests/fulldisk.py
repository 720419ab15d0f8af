"""A real disk that fills up: a small tmpfs mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN); where that is impossible the test is skipped
with the reason. The mount sits under the test's own temporary folder and is lazily
unmounted when the test ends, so nothing outlives it. ``fill()`` writes a filler file
until the kernel answers ENOSPC; ``free()`` deletes it, and space returns.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        with open(self.filler, "ab") as out:
            while True:
                if leave_bytes and shutil.disk_usage(self.root).free <= leave_bytes:
                    return
                try:
                    out.write(chunk)
                    out.flush()
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
    problem = _mount_error(root, DEFAULT_SIZE)
    if problem:
        pytest.skip(f"a full-disk test needs a real small filesystem: {problem} "
                    "(run as root, or where tmpfs may be mounted)")
    try:
        yield FullDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, capture_output=True)
