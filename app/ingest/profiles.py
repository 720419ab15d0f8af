"""Completeness profiles: how an instrument says that an acquisition is finished.

A watched-folder rule names one profile (``profile``, default ``quiet``) with string
options (``profile_options``). The watcher keeps doing what it always did — events as
hints, scans as truth, the quiet period measured on this machine's clock — and, once a
unit (a file, or a folder captured as one dataset) has been quiet, asks the profile:
complete, or still waiting, and for what? The answer is shown in the folder's status
("waiting for `fid` or `ser`").

The interface (the built-ins use exactly this; third parties add profiles through the
entry point group ``benchdata.completeness``, see docs/watching.md)::

    factory(options: Mapping[str, str]) -> profile     # ValueError: options are wrong

    profile.folders: bool        # True: each unit is a folder, captured whole as a zip
    profile.describe() -> str    # what it waits for, finishing "complete when ..."
    profile.check(candidate: Candidate) -> Verdict     # complete, or waiting for what
    profile.ignores(name: str) -> bool                 # names never captured (markers)

Qt-free, no I/O in ``describe``; ``check`` runs on the folder's worker thread after the
quiet period and must be quick (it is asked again about every half second while it says
"waiting"). An exception from ``check`` is reported in the folder's status and retried;
it never stops the folder.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final, Optional, Protocol, runtime_checkable

from app.core.errors import ValidationError
from app.ingest.completeness import check_marker_template, marker_name_regex, marker_path
from app.ingest.openfiles import OpenFileTable

if TYPE_CHECKING:
    from app.ingest.scanner import FileEntry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "benchdata.completeness"
DEFAULT_PROFILE: Final = "quiet"


# -- the interface -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A unit that has been quiet for the rule's quiet period, as the scanner saw it."""

    path: Path  # the file, or the dataset folder
    rel_path: str  # relative to the watched folder, ``/``-separated
    is_folder: bool
    #: A folder's files (relative to it, ``/``-separated, sorted; links never included).
    files: tuple["FileEntry", ...] = ()
    #: The watched folder is on a network file system (writers may be other computers).
    on_network_share: bool = False

    def file_paths(self) -> list[Path]:
        """The files of the unit: the file itself, or every file of the folder."""
        if not self.is_folder:
            return [self.path]
        return [self.path / entry.rel_path for entry in self.files]


@dataclass(frozen=True)
class Verdict:
    """A profile's answer. ``waiting_for`` completes "waiting for ..." (e.g. "`fid`");
    ``note`` says what the profile cannot check here and what it does instead;
    ``recheck_s`` asks to be asked again later than usual (a costly check), though any
    event about the unit still brings the next look forward."""

    complete: bool
    waiting_for: str = ""
    note: str = ""
    recheck_s: Optional[float] = None


COMPLETE: Final = Verdict(True)


def waiting(what: str, note: str = "", recheck_s: Optional[float] = None) -> Verdict:
    return Verdict(False, what, note, recheck_s)


@runtime_checkable
class CompletenessProfile(Protocol):
    folders: bool

    def describe(self) -> str: ...

    def check(self, candidate: Candidate) -> Verdict: ...

    def ignores(self, name: str) -> bool: ...


ProfileFactory = Callable[[Mapping[str, str]], CompletenessProfile]


class Profile:
    """Defaults for the built-ins (a plugin may use it too, or write the four members)."""

    folders = False
    #: The option names this profile takes (others are refused with one sentence).
    options: tuple[str, ...] = ()

    def __init__(self, options: Mapping[str, str]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) if self.options else "no options"
            raise ValueError(f"unknown option {', '.join(unknown)}; this profile takes {takes}")

    def describe(self) -> str:
        return ""

    def check(self, candidate: Candidate) -> Verdict:
        return COMPLETE

    def ignores(self, name: str) -> bool:
        return False


def _flag(options: Mapping[str, str], key: str) -> bool:
    value = options.get(key, "no").strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"{key} must be yes or no, not {value!r}")


def _patterns(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;]", text) if part.strip()]


# -- built-in profiles ---------------------------------------------------------------


class QuietProfile(Profile):
    """Complete when it has not changed for the quiet period (the default)."""


class MarkerProfile(Profile):
    """Complete when its marker file exists (`{name}.done`, or any `*.complete` beside it)."""

    options = ("marker", "capture_markers")
    _FOLDER_TTL_S: Final = 0.25

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(options)
        self.marker = options.get("marker", "").strip() or "{name}.done"
        self.capture_markers = _flag(options, "capture_markers")
        #: ``{name}``/``{stem}``: one marker per unit; else a pattern: any file in the
        #: unit's folder matching it marks every unit there complete.
        self.per_unit = "{" in self.marker or "}" in self.marker
        if self.per_unit:
            check_marker_template(self.marker)
            self._names = marker_name_regex(self.marker)
        else:
            if "/" in self.marker or "\\" in self.marker:
                raise ValueError("a marker pattern names a file beside the data, e.g. "
                                 "'*.complete' or 'DONE' (or use '{name}.done')")
            self._names = re.compile(fnmatch.translate(self.marker), re.IGNORECASE)
        self._lock = threading.Lock()
        self._folders: dict[Path, tuple[float, bool]] = {}

    def describe(self) -> str:
        if self.per_unit:
            return f"its marker `{self.marker}` exists"
        return f"a marker file matching `{self.marker}` exists beside it"

    def check(self, candidate: Candidate) -> Verdict:
        if self.per_unit:
            marker = marker_path(self.marker, candidate.path)
            return COMPLETE if os.path.lexists(marker) else waiting(f"`{marker.name}`")
        if self._folder_has_marker(candidate.path.parent):
            return COMPLETE
        return waiting(f"a marker matching `{self.marker}`")

    def _folder_has_marker(self, folder: Path) -> bool:
        """One listing of a folder serves every unit in it for a moment (a big folder of
        data files waiting for one marker must not be listed once per file)."""
        now = time.monotonic()
        with self._lock:
            seen = self._folders.get(folder)
            if seen is not None and now - seen[0] <= self._FOLDER_TTL_S:
                return seen[1]
        try:
            with os.scandir(folder) as entries:
                found = any(self._names.fullmatch(entry.name) for entry in entries)
        except FileNotFoundError:
            found = False
        with self._lock:
            if len(self._folders) > 1000:
                self._folders.clear()
            self._folders[folder] = (now, found)
        return found

    def ignores(self, name: str) -> bool:
        return not self.capture_markers and bool(self._names.fullmatch(name))


class DatasetProfile(Profile):
    """A folder is one dataset, complete when files matching every `require` pattern exist."""

    folders = True
    options: tuple[str, ...] = ("require",)

    def __init__(self, options: Mapping[str, str],
                 required: Optional[list[str]] = None) -> None:
        super().__init__(options)
        self.required = required if required is not None else _patterns(options.get("require", ""))
        if not self.required:
            raise ValueError("give the files a complete dataset holds, e.g. "
                             "require='*.raw,meta/info.json' ('a|b' means either)")
        #: Each requirement: its alternatives, and one regex matching any of them.
        self._checks = [(alternatives, re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in alternatives), re.IGNORECASE))
            for alternatives in ([p.strip() for p in item.split("|") if p.strip()]
                                 for item in self.required)]

    def describe(self) -> str:
        return f"it holds {self._listed(self._checks)}"

    @staticmethod
    def _listed(checks: list[tuple[list[str], re.Pattern[str]]]) -> str:
        phrases = [" or ".join(f"`{p}`" for p in alternatives) for alternatives, _ in checks]
        if len(phrases) <= 1:
            return "".join(phrases)
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]

    def check(self, candidate: Candidate) -> Verdict:
        names = [entry.rel_path for entry in candidate.files]
        missing = [(alternatives, regex) for alternatives, regex in self._checks
                   if not any(regex.match(name) for name in names)]
        return waiting(self._listed(missing)) if missing else COMPLETE


class BrukerNmrProfile(DatasetProfile):
    """A Bruker NMR experiment folder: complete when it holds acqus, pulseprogram, fid or ser."""

    options = ()
    REQUIRED: Final = ["acqus", "pulseprogram", "fid|ser"]

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(options, required=list(self.REQUIRED))

    def describe(self) -> str:
        return "it is a Bruker NMR experiment holding " + super().describe().removeprefix(
            "it holds ")


class MicroManagerProfile(Profile):
    """A Micro-Manager acquisition folder: complete when its metadata.txt is closed JSON."""

    folders = True
    #: Larger metadata files are checked by counting braces instead of parsing them.
    PARSE_LIMIT: Final = 64 * 1024 * 1024

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(options)
        self._lock = threading.Lock()
        self._closed: dict[tuple[str, int, int], bool] = {}

    def describe(self) -> str:
        return "its `metadata.txt` (every one, in position folders too) is closed JSON"

    @staticmethod
    def is_metadata(rel_path: str) -> bool:
        name = PurePosixPath(rel_path).name.lower()
        return name == "metadata.txt" or name.endswith("_metadata.txt")

    def check(self, candidate: Candidate) -> Verdict:
        found = [entry for entry in candidate.files if self.is_metadata(entry.rel_path)]
        if not found:
            return waiting("`metadata.txt`")
        for entry in found:
            if not self._is_closed(candidate.path / entry.rel_path, entry.size, entry.mtime_ns):
                return waiting(f"`{entry.rel_path}` to be finished (its JSON is not closed yet)")
        return COMPLETE

    def _is_closed(self, path: Path, size: int, mtime_ns: int) -> bool:
        key = (str(path), size, mtime_ns)
        with self._lock:
            if key in self._closed:
                return self._closed[key]
        closed = json_document_closed(path, self.PARSE_LIMIT)
        with self._lock:
            if len(self._closed) > 1000:
                self._closed.clear()
            self._closed[key] = closed
        return closed


def json_document_closed(path: Path, parse_limit: int) -> bool:
    """Is the file one complete JSON object (Micro-Manager writes the closing brace last)?

    Up to ``parse_limit`` bytes it is parsed; a larger file is read in chunks and its
    braces counted (Micro-Manager's values hold no braces), which needs no memory."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(path, flags), "rb") as handle:
        if os.fstat(handle.fileno()).st_size <= parse_limit:
            try:
                return isinstance(json.loads(handle.read()), dict)
            except (ValueError, UnicodeDecodeError):
                return False
        depth, last = 0, b""
        while chunk := handle.read(4 * 1024 * 1024):
            depth += chunk.count(b"{") - chunk.count(b"}")
            last = chunk.rstrip() or last
    return depth == 0 and last.endswith(b"}")


class ThermoEpuProfile(Profile):
    """A Thermo Fisher EPU session folder: complete when EpuSession.dm is there and every
    image has its .xml metadata."""

    folders = True
    IMAGE_SUFFIXES: Final = (".mrc", ".tif", ".tiff", ".eer", ".jpg")

    def describe(self) -> str:
        return ("it holds `EpuSession.dm` and every image under `Images-Disc*` has its `.xml` "
                "metadata beside it (a movie `*_Fractions.*` counts with its image's)")

    def check(self, candidate: Candidate) -> Verdict:
        names = {entry.rel_path for entry in candidate.files}
        if not any(name.lower() == "epusession.dm" for name in names):
            return waiting("`EpuSession.dm`")
        described = {name[:-4].lower() for name in names if name.lower().endswith(".xml")}
        missing = []
        for name in sorted(names):
            lowered = name.lower()
            if not lowered.startswith("images-disc") or not lowered.endswith(self.IMAGE_SUFFIXES):
                continue
            stem = lowered.rsplit(".", 1)[0].removesuffix("_fractions")
            if stem not in described:
                missing.append(name.rsplit(".", 1)[0].removesuffix("_Fractions") + ".xml")
        missing = list(dict.fromkeys(missing))  # an image and its movie want one file
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return waiting(f"`{missing[0]}`{more}")
        return COMPLETE


class HeldOpenProfile(Profile):
    """Complete when no process holds it open for writing (Linux; elsewhere: quiet period)."""

    #: A look at every process costs about 20 ms of CPU; a file held open for hours is
    #: looked at every few seconds (its close event brings the next look forward).
    RECHECK_S: Final = 2.0

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(options)
        self._table = OpenFileTable()

    def describe(self) -> str:
        return ("no program holds it open for writing (seen in Linux's /proc; where that "
                "cannot be seen, the quiet period alone decides and the status says so)")

    def check(self, candidate: Candidate) -> Verdict:
        if candidate.on_network_share:
            return Verdict(True, note="held-open: files on a network share may be held open "
                                      "by another computer, which cannot be seen; complete "
                                      "after the quiet period")
        held, why = self._table.writers_of(candidate.file_paths())
        if held is None:
            return Verdict(True, note=f"held-open cannot be checked ({why}); complete after "
                                      "the quiet period")
        if held:
            path, writer = held[0]
            name = path.relative_to(candidate.path).as_posix() if candidate.is_folder else path.name
            return waiting(f"`{name}` to be closed by {writer}", recheck_s=self.RECHECK_S)
        return COMPLETE


BUILTIN: Final[dict[str, ProfileFactory]] = {
    "quiet": QuietProfile,
    "marker": MarkerProfile,
    "held-open": HeldOpenProfile,
    "dataset": DatasetProfile,
    "bruker-nmr": BrukerNmrProfile,
    "micromanager": MicroManagerProfile,
    "thermo-epu": ThermoEpuProfile,
}


# -- the registry --------------------------------------------------------------------


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed plugins by name (a name a built-in has is ignored, with a warning)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            log.warning("ignoring the completeness profile %r from %s: a built-in profile "
                        "has that name", entry.name, entry.value)
            continue
        found.setdefault(entry.name, entry)
    return found


def profile_names() -> list[str]:
    """Built-in profiles first, then installed plugins (none is imported)."""
    return [*BUILTIN, *sorted(_entry_points())]


def load_factory(name: str) -> ProfileFactory:
    """The factory of profile ``name`` (a plugin is imported now); ValidationError if none."""
    if name in BUILTIN:
        return BUILTIN[name]
    entry = _entry_points().get(name)
    if entry is None:
        raise ValidationError(f"no completeness profile {name!r} is installed; installed: "
                              f"{', '.join(profile_names())} (benchdata watch profiles)")
    try:
        factory = entry.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one sentence, not a crash
        raise ValidationError(f"the completeness profile {name!r} ({entry.value}) cannot be "
                              f"loaded: {exc}") from exc
    if not callable(factory):
        raise ValidationError(f"the completeness profile {name!r} ({entry.value}) is not a "
                              "factory (a class or function taking the options)")
    return factory


def make_profile(name: str, options: Mapping[str, str]) -> CompletenessProfile:
    """Profile ``name`` with ``options``; a ValidationError says what to fix."""
    factory = load_factory(name)
    try:
        profile = factory(dict(options))
    except ValueError as exc:
        raise ValidationError(f"completeness profile {name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's bug, said in one sentence
        raise ValidationError(f"the completeness profile {name!r} failed to start: {exc}") from exc
    missing = [member for member in ("folders", "describe", "check", "ignores")
               if not hasattr(profile, member)]
    if missing:
        raise ValidationError(f"the completeness profile {name!r} lacks "
                              f"{', '.join(missing)} (see docs/watching.md)")
    return profile


def summary(name: str) -> str:
    """The first line of a profile's docstring (for ``watch profiles`` and the window)."""
    try:
        factory = load_factory(name)
    except ValidationError as exc:
        return str(exc)
    doc = (getattr(factory, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())
