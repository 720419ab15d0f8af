"""Streaming walks of a watched folder with ``os.scandir``.

Scans are the truth the watcher reconciles against (events are only hints), so they must be
cheap on big folders: entries are yielded one at a time — nothing per file is kept — and the
caller compares them with the ledger in batches. Relative paths always use ``/``.

A folder that cannot be listed is reported and skipped; the watched folder itself missing
raises :class:`RootMissingError` so that an unmounted share is never read as "every file
was deleted".
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from app.core import fsnames
from app.ingest.rules import WatchRule

log = logging.getLogger(__name__)

ErrorCallback = Callable[[str, OSError], None]
#: Hears of a refused symbolic link: (relative path, reason).
LinkCallback = Callable[[str, str], None]


class RootMissingError(FileNotFoundError):
    """The watched folder (or the folder a scan started in) is not there."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    rel_path: str
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int = 0

    @classmethod
    def of(cls, rel_path: str, stat: os.stat_result) -> "FileEntry":
        return cls(rel_path, stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)

    @property
    def signature(self) -> tuple[int, int, int]:
        return (self.size, self.mtime_ns, self.ino)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _report(on_error: Optional[ErrorCallback], rel: str, exc: OSError) -> None:
    if on_error is not None:
        on_error(rel, exc)
    else:
        log.warning("cannot list %s: %s", rel or ".", exc)


class FileFilter(Protocol):
    """What a walk needs to know from a rule (a rule, or a rule seen from a dataset)."""

    @property
    def recursive(self) -> bool: ...

    def accepts_dir(self, name: str) -> bool: ...

    def accepts_file(self, rel_path: str) -> bool: ...


def link_refusal(link: str, root: str, private: Sequence[Path]) -> Optional[str]:
    """Why the symbolic link ``link`` in the watched folder ``root`` is refused, or None
    when it stays inside the folder (then it is skipped quietly: links are never
    followed, and a target inside the folder is captured under its own path).

    ``root`` is the folder with its links resolved; ``private`` the bench's own folders.
    """
    target = os.path.realpath(link)
    shown = fsnames.readable(target)
    if any(_inside(target, str(folder)) for folder in private):
        return (f"in (or a link into) this bench's own data or configuration folder "
                f"({shown}); never captured")
    if not _inside(target, root):
        return f"a link to {shown}, outside the watched folder; links are not followed"
    return None


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.normcase(path), os.path.normcase(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk_files(root: Path, rule: FileFilter, *, start: str = "", recursive: Optional[bool] = None,
               max_depth: Optional[int] = None, skip: Sequence[Path] = (),
               on_error: Optional[ErrorCallback] = None,
               on_link: Optional[LinkCallback] = None) -> Iterator[FileEntry]:
    """Every accepted regular file under ``root/start`` (depth-first, streamed).

    ``max_depth`` counts folder levels below ``root`` (0 = files directly in root);
    ``skip`` are folders never entered (the bench's own folders, if they are inside).
    Symbolic links are never followed: ``on_link(rel, reason)`` hears of each link that
    leaves the folder (see :func:`link_refusal`); links that stay inside are skipped.
    """
    recursive = rule.recursive if recursive is None else recursive
    real_root = os.path.realpath(root)
    skip_strs = {os.path.normcase(str(folder)) for folder in as_seen_from(root, skip)}
    first = root / start if start else root
    stack: list[tuple[str, str, int]] = [(str(first), start, start.count("/") + 1 if start else 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        iterator = _open_folder(directory, prefix, start, on_error)
        if iterator is None:
            continue
        with iterator:
            for entry in iterator:
                try:
                    name = entry.name
                    # A Windows junction redirects a folder like a link (Python 3.12+ says).
                    if entry.is_symlink() or getattr(entry, "is_junction", bool)():
                        _check_link(entry.path, _join(prefix, name), real_root, skip, on_link)
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if (recursive and rule.accepts_dir(name)
                                and (max_depth is None or depth < max_depth)
                                and os.path.normcase(entry.path) not in skip_strs):
                            stack.append((entry.path, _join(prefix, name), depth + 1))
                        continue
                    rel = _join(prefix, name)
                    if not entry.is_file(follow_symlinks=False) or not rule.accepts_file(rel):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # vanished between listing and stat
                except OSError as exc:
                    _report(on_error, _join(prefix, entry.name), exc)
                    continue
                yield FileEntry.of(rel, stat)


def as_seen_from(root: Path, folders: Sequence[Path]) -> list[Path]:
    """``folders`` as a walk of ``root`` meets them: as given, and also spelled through
    ``root`` when ``root`` is reached through a link (e.g. the bench's own folders inside
    a watched folder named by a link)."""
    real_root = os.path.realpath(root)
    found = []
    for folder in folders:
        found.append(Path(folder))
        real = os.path.realpath(folder)
        if _inside(real, real_root) and real_root != os.path.normcase(str(root)):
            found.append(root / os.path.relpath(real, real_root))
    return found


def _check_link(path: str, rel: str, real_root: str, private: Sequence[Path],
                on_link: Optional[LinkCallback]) -> None:
    reason = link_refusal(path, real_root, private)
    if reason is None:
        return
    if on_link is not None:
        on_link(rel, reason)
    else:
        log.warning("not captured: %s is %s", fsnames.readable(rel), reason)


def _open_folder(directory: str, prefix: str, start: str,
                 on_error: Optional[ErrorCallback]) -> Optional[Any]:
    """``os.scandir`` of one folder of a walk; None to skip it.

    The walk's own starting folder missing is a RootMissingError (an unmounted share is
    reported, never read as "everything was deleted"); a subfolder that vanished mid-scan
    holds nothing to capture, and other errors are reported and skipped."""
    try:
        return os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if prefix == start:
            raise RootMissingError(exc.errno, f"{directory} is not there", directory) from exc
        return None
    except OSError as exc:
        if prefix == start and not start:
            raise
        _report(on_error, prefix, exc)
        return None


def walk_dataset_folders(root: Path, rule: WatchRule, *, start: str = "",
                         on_error: Optional[ErrorCallback] = None,
                         skip: Sequence[Path] = ()) -> Iterator[str]:
    """Relative paths of the folders exactly ``rule.dataset_depth`` levels below root
    (``skip``: folders that are neither datasets nor entered, as in :func:`walk_files`)."""
    skip_strs = {os.path.normcase(str(folder)) for folder in as_seen_from(root, skip)}
    depth_wanted = rule.dataset_depth
    first = root / start if start else root
    start_depth = start.count("/") + 1 if start else 0
    if start_depth == depth_wanted:
        if first.is_dir():
            yield start
        return
    stack: list[tuple[str, str, int]] = [(str(first), start, start_depth)]
    while stack:
        directory, prefix, depth = stack.pop()
        iterator = _open_folder(directory, prefix, start, on_error)
        if iterator is None:
            continue
        with iterator:
            for entry in iterator:
                try:
                    if (not entry.is_dir(follow_symlinks=False)
                            or not rule.accepts_dir(entry.name)
                            or os.path.normcase(entry.path) in skip_strs):
                        continue
                except OSError:
                    continue
                rel = _join(prefix, entry.name)
                if depth + 1 == depth_wanted:
                    yield rel
                else:
                    stack.append((entry.path, rel, depth + 1))


@dataclass(frozen=True)
class DatasetListing:
    """The files of one dataset folder, and the fingerprint that must stay quiet."""

    rel_path: str
    files: list[FileEntry]  # rel_path inside the dataset folder, sorted

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def max_mtime_ns(self) -> int:
        return max((f.mtime_ns for f in self.files), default=0)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f"{f.rel_path}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    @property
    def signature(self) -> tuple[int, int, str]:
        return (len(self.files), self.total_size, self.fingerprint)


def list_dataset(root: Path, rule: WatchRule, rel_path: str,
                 on_error: Optional[ErrorCallback] = None,
                 on_link: Optional[LinkCallback] = None,
                 skip: Sequence[Path] = ()) -> DatasetListing:
    """List a dataset folder (raises RootMissingError if the folder is gone).

    Links inside it are not part of the dataset (never followed, like everywhere), nor are
    the ``skip`` folders (the bench's own)."""
    entries = list(walk_files(root / rel_path, _DatasetView(rule, rel_path), recursive=True,
                              on_error=on_error, skip=as_seen_from(root, skip),
                              on_link=_under(rel_path, on_link) if on_link else None))
    entries.sort(key=lambda f: f.rel_path)
    return DatasetListing(rel_path, entries)


def _under(prefix: str, on_link: LinkCallback) -> LinkCallback:
    return lambda rel, reason: on_link(f"{prefix}/{rel}", reason)


class _DatasetView:
    """A rule seen from inside one dataset folder (patterns apply to the full path)."""

    def __init__(self, rule: WatchRule, prefix: str) -> None:
        self._rule = rule
        self._prefix = prefix

    def accepts_dir(self, name: str) -> bool:
        return self._rule.accepts_dir(name)

    def accepts_file(self, rel_path: str) -> bool:
        return self._rule.accepts_file(f"{self._prefix}/{rel_path}")

    @property
    def recursive(self) -> bool:
        return True
