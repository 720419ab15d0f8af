"""Where blobs live: ``blobs/<sha[:2]>/<sha[2:4]>/<sha>``, read-only, placed durably.

Stored blobs are read-only (0o444) to guard against accidental edits. Directories are
created with an fsync of each parent that gained an entry, and a blob arrives under its
name by one atomic rename, so after a crash a blob is either complete or absent.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final

from app.core.atomic import fsync_dir
from app.core.errors import ValidationError

logger = logging.getLogger(__name__)

SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
BLOB_MODE: Final = 0o444


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    """The blob path for ``sha256``; ValueError unless it is 64 lowercase hex digits."""
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise ValidationError(
            f"{sha256!r} is not a SHA-256 digest (64 lowercase hexadecimal digits)")
    return blobs_dir / sha256[:2] / sha256[2:4] / sha256


def make_dirs_durably(directory: Path, stop: Path) -> None:
    """Create ``directory`` (below ``stop``) and fsync each parent that gained an entry."""
    if directory == stop or directory.is_dir():
        return
    make_dirs_durably(directory.parent, stop)
    try:
        directory.mkdir()
    except FileExistsError:
        return  # another capture created it; its creator makes it durable
    fsync_dir(directory.parent)


def replace_blob(source: Path, dest: Path) -> None:
    """Atomically move ``source`` to ``dest``, also over a damaged read-only blob on Windows."""
    try:
        os.replace(source, dest)
    except PermissionError:
        if os.name == "posix" or not dest.exists():
            raise
        os.chmod(dest, 0o600)
        os.replace(source, dest)


def existing_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        try:  # Windows will not delete a read-only file
            os.chmod(path, 0o600)
            path.unlink()
            return True
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, exc)
            return False
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)
        return False
