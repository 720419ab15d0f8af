"""Watched-folder rules and their persistence in the ``watch`` config section.

A rule says which folder to watch, which files count, when a file is complete (quiet
period, lock test, marker file), whether each subfolder is one dataset, and how paths map
onto metadata. Rules live in ``config.json`` as ``{"version": 1, "rules": [...]}``.

Rule ids are derived from the watched folder's absolute path (``out-3f9a2c1b``), so a
folder that is removed and added again gets its old id back — and with it the capture
ledger, so nothing it already captured is captured twice. A second rule on the same folder
gets ``-2``, ``-3`` ... appended.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from app.core.config import load_section, save_section
from app.core.errors import NotFoundError, ValidationError
from app.core.paths import BenchPaths
from app.ingest.completeness import check_marker_template, marker_name_regex, marker_path
from app.ingest.profiles import DEFAULT_PROFILE, CompletenessProfile, make_profile
from app.ingest.templates import PathTemplate, check_label_template, ownership_kind

log = logging.getLogger(__name__)

SECTION: Final = "watch"
CONFIG_VERSION: Final = 1

#: Names instruments and editors use while a file is still being written; never captured
#: (a rename from one of these into a matching name is a capture).
TEMPORARY_PATTERNS: Final[tuple[str, ...]] = (
    "*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload", "*.swp", "*~", "~$*", ".*",
)

ObserverKind = Literal["auto", "native", "polling", "none"]


def compile_patterns(patterns: Iterable[str]) -> Optional[re.Pattern[str]]:
    """One regex for a list of glob patterns (None for an empty list).

    Case-insensitive everywhere: an operator's '*.csv' must also take RUN1.CSV. One
    compiled regex instead of a loop over fnmatch: scans test every file of big folders.
    """
    parts = [f"(?:{fnmatch.translate(pattern)})" for pattern in patterns]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _hit(regex: Optional[re.Pattern[str]], text: str) -> bool:
    return regex is not None and regex.match(text) is not None


_TEMPORARY_REGEX: Final = compile_patterns(TEMPORARY_PATTERNS)


class WatchRule(BaseModel):
    """One watched folder and how its files are captured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    path: str
    enabled: bool = True
    #: File-name patterns (a pattern with ``/`` is matched against the relative path).
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    ignore_temporary: bool = True
    recursive: bool = True
    #: Seconds without a size/mtime change before a file counts as complete.
    quiet_seconds: float = Field(2.0, ge=0.0, le=86400.0)
    #: Also require that the file can be opened for exclusive access (Windows: no other
    #: handle open; POSIX: no advisory lock held).
    lock_test: bool = False
    #: Marker template relative to the file's folder, e.g. ``{name}.done`` or ``{stem}.ok``;
    #: the file is complete only once the marker exists. Marker files are never captured.
    marker: Optional[str] = None
    #: Treat each folder ``dataset_depth`` levels below the watched folder as one dataset,
    #: captured as one zip archive datapoint once the whole folder is quiet.
    datasets: bool = False
    dataset_depth: int = Field(1, ge=1, le=16)
    path_template: Optional[str] = None
    label_template: str = "{name}"
    #: How the instrument says an acquisition is finished (``app.ingest.profiles``): a
    #: built-in (quiet, marker, held-open, dataset, bruker-nmr, micromanager, thermo-epu)
    #: or a plugin from the ``benchdata.completeness`` entry point group.
    profile: str = DEFAULT_PROFILE
    profile_options: dict[str, str] = Field(default_factory=dict)
    #: Fixed metadata; keys naming an ownership kind (``user``, ``user_id`` ...) become
    #: ownership ids through the names-and-ids mapping.
    metadata: dict[str, str] = Field(default_factory=dict)
    #: ``auto`` = native events on local disks, polling on network shares.
    observer: ObserverKind = "auto"
    poll_interval: float = Field(5.0, ge=0.1, le=3600.0)
    #: Full reconcile scan period (seconds); events are hints, scans are truth.
    rescan_interval: float = Field(300.0, ge=1.0, le=86400.0)
    #: Opt-in: remove (or move to ``originals_move_to``) the instrument's original files
    #: once their central copy is verified and they were captured more than this many days
    #: ago (None: never touch them). Only files whose bytes still match the capture
    #: (app/ingest/originals.py).
    originals_after_days: Optional[float] = Field(None, ge=0.0)
    originals_action: Literal["remove", "move"] = "remove"
    originals_move_to: Optional[str] = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the watched folder path is empty")
        return normalize_root(value)

    @field_validator("include")
    @classmethod
    def _some_include(cls, value: list[str]) -> list[str]:
        cleaned = [p.strip() for p in value if p.strip()]
        if not cleaned:
            raise ValueError("include needs at least one pattern (use '*' for every file)")
        return cleaned

    @field_validator("marker")
    @classmethod
    def _marker(cls, value: Optional[str]) -> Optional[str]:
        if value is None or not value.strip():
            return None
        return check_marker_template(value)

    @field_validator("path_template")
    @classmethod
    def _template(cls, value: Optional[str]) -> Optional[str]:
        if value is None or not value.strip():
            return None
        PathTemplate(value)  # raises a clear error on bad syntax
        return value.strip()

    @field_validator("profile")
    @classmethod
    def _profile_name(cls, value: str) -> str:
        value = value.strip().lower()
        if not value:
            return DEFAULT_PROFILE
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value):
            raise ValueError(f"{value!r} is not a profile name; see: benchdata watch profiles")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.strip():
                raise ValueError("metadata keys must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "WatchRule":
        if not self.name:
            object.__setattr__(self, "name", Path(self.path).name or self.path)
        if self.originals_action == "move":
            if not (self.originals_move_to or "").strip():
                raise ValueError("originals_action 'move' needs originals_move_to (a folder)")
            target = normalize_root(str(self.originals_move_to))
            if Path(target).is_relative_to(self.path) or Path(self.path).is_relative_to(target):
                raise ValueError("originals_move_to must be outside the watched folder")
            object.__setattr__(self, "originals_move_to", target)
        known = set(self.metadata)
        if self.path_template:
            known |= set(PathTemplate(self.path_template).fields)
        known |= {kind for key in list(known) if (kind := ownership_kind(key))}
        check_label_template(self.label_template, known)
        return self

    # -- derived, not persisted ------------------------------------------------------

    @cached_property
    def root(self) -> Path:
        return Path(self.path)

    @cached_property
    def completeness(self) -> CompletenessProfile:
        """The rule's completeness profile; a ValidationError when it is not installed or
        its options are wrong (rules still load then: the watcher reports it, and every
        other rule goes on)."""
        return make_profile(self.profile, self.profile_options)

    def check_profile(self) -> None:
        """Refuse a profile that is not installed or has wrong options (on add and edit)."""
        self.completeness  # noqa: B018 - builds it, raising what is wrong

    @cached_property
    def _profile_or_none(self) -> Optional[CompletenessProfile]:
        try:
            return self.completeness
        except ValidationError:
            return None

    @property
    def folder_units(self) -> bool:
        """Is each folder ``dataset_depth`` levels down one unit (a dataset, one zip)?
        Yes with ``datasets``, and with a folder profile (bruker-nmr, dataset ...)."""
        profile = self._profile_or_none
        return self.datasets or bool(profile is not None and profile.folders)

    def describe_completeness(self) -> str:
        """One sentence: what this rule waits for before it captures a unit."""
        profile = self._profile_or_none
        if profile is None:
            return f"Nothing is captured: the completeness profile {self.profile!r} is not usable."
        if self.folder_units:
            unit = (f"Each folder {self.dataset_depth} level{'s' if self.dataset_depth > 1 else ''}"
                    " below the watched folder is one dataset (one zip archive); it is complete "
                    "when")
            quiet = f"nothing in it has changed for {self.quiet_seconds:g} s"
        else:
            unit = "A file is complete when"
            quiet = f"it has not changed for {self.quiet_seconds:g} s"
        conditions = [text for text in (profile.describe().strip().rstrip("."),) if text]
        if self.marker:
            conditions.append(f"its marker `{self.marker}` exists")
        if self.lock_test:
            conditions.append("no other program has it locked")
        conditions.append(quiet)
        # The last condition is the quiet period; a comma keeps it apart from a profile's
        # own "a and b or c".
        listed = (", ".join(conditions[:-1]) + ", and " + conditions[-1]
                  if len(conditions) > 1 else conditions[0])
        return f"{unit} {listed}."

    @cached_property
    def compiled_template(self) -> Optional[PathTemplate]:
        return PathTemplate(self.path_template) if self.path_template else None

    @cached_property
    def marker_regex(self) -> Optional[re.Pattern[str]]:
        """Matches the names of marker files (which are never captured themselves)."""
        return marker_name_regex(self.marker) if self.marker else None

    def marker_for(self, unit: Path) -> Optional[Path]:
        """The marker path that says ``unit`` (a file or dataset folder) is complete."""
        return marker_path(self.marker, unit) if self.marker else None

    @cached_property
    def _compiled(self) -> tuple[Optional[re.Pattern[str]], ...]:
        """(include by name, include by path, exclude by name, exclude by path)."""
        return (compile_patterns(p for p in self.include if "/" not in p),
                compile_patterns(p for p in self.include if "/" in p),
                compile_patterns(p for p in self.exclude if "/" not in p),
                compile_patterns(p for p in self.exclude if "/" in p))

    def ignores_name(self, name: str) -> bool:
        """Temporary names and marker files (files and folders)."""
        if self.ignore_temporary and _hit(_TEMPORARY_REGEX, name):
            return True
        if self.marker_regex is not None and self.marker_regex.fullmatch(name):
            return True
        profile = self._profile_or_none
        if profile is None:
            return False
        try:
            return bool(profile.ignores(name))
        except Exception:  # noqa: BLE001 - a plugin's bug must not stop a scan
            log.warning("completeness profile %r failed to judge the name %r; capturing it",
                        self.profile, name, exc_info=True)
            return False

    def accepts_file(self, rel_path: str) -> bool:
        """Does this file (``/``-separated path relative to the root) count?"""
        name = rel_path.rsplit("/", 1)[-1]
        if self.ignores_name(name):
            return False
        include_name, include_path, exclude_name, exclude_path = self._compiled
        if not (_hit(include_name, name) or _hit(include_path, rel_path)):
            return False
        return not (_hit(exclude_name, name) or _hit(exclude_path, rel_path))

    def accepts_dir(self, name: str) -> bool:
        """Is a subfolder walked into? (Hidden and temporary folders are not.)"""
        return not (self.ignore_temporary and _hit(_TEMPORARY_REGEX, name))

    def to_config(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def normalize_root(path: str | os.PathLike[str]) -> str:
    """Absolute, user-expanded, normalised (not resolved: a share may be unmounted)."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def derive_rule_id(path: str, taken: Iterable[str]) -> str:
    """``<folder-name>-<8 hex of sha256(path)>``, with ``-2``... if already taken."""
    normalized = os.path.normcase(normalize_root(path))
    digest = hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", Path(normalized).name.casefold()).strip("-")[:24] or "root"
    base = f"{slug}-{digest}"
    taken_set = set(taken)
    candidate, number = base, 2
    while candidate in taken_set:
        candidate = f"{base}-{number}"
        number += 1
    return candidate


# -- persistence ---------------------------------------------------------------------


def validate_rule(data: Mapping[str, Any]) -> WatchRule:
    """A rule from plain data; problems raise one ValidationError a person can act on."""
    try:
        return WatchRule.model_validate(dict(data))
    except PydanticValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ValidationError("watch rule: " + "; ".join(problems)) from None


def load_rules(paths: BenchPaths) -> list[WatchRule]:
    """Every configured rule (paused ones too), validated."""
    section = load_section(paths, SECTION)
    if section is None:
        return []
    if not isinstance(section, dict) or not isinstance(section.get("rules", []), list):
        raise ValidationError(
            f"the '{SECTION}' section of {paths.config_file} must be an object with a "
            "'rules' list; fix it or remove the section")
    version = section.get("version", CONFIG_VERSION)
    if isinstance(version, int) and version > CONFIG_VERSION:
        raise ValidationError(
            f"the watch rules in {paths.config_file} were written by a newer Bench Data "
            "Manager; upgrade the app")
    return [validate_rule(item) for item in section.get("rules", [])]


def save_rules(paths: BenchPaths, rules: Iterable[WatchRule]) -> None:
    save_section(paths, SECTION, {"version": CONFIG_VERSION,
                                  "rules": [rule.to_config() for rule in rules]})


def find_rule(rules: Iterable[WatchRule], ref: str) -> WatchRule:
    """A rule by id, unique id prefix, name or folder path."""
    rules = list(rules)
    for rule in rules:
        if rule.id == ref:
            return rule
    by_name = [r for r in rules if r.name == ref]
    if len(by_name) == 1:
        return by_name[0]
    try:
        as_path = normalize_root(ref)
    except (OSError, ValueError):
        as_path = None
    by_path = [r for r in rules if as_path is not None and r.path == as_path]
    if len(by_path) == 1:
        return by_path[0]
    by_prefix = [r for r in rules if r.id.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_name) + len(by_path) + len(by_prefix) > 1:
        raise ValidationError(f"{ref!r} matches several watch rules; give the rule id "
                              "(benchdata watch list)")
    raise NotFoundError(f"no watch rule {ref!r}; list them with: benchdata watch list")


def add_rule(paths: BenchPaths, folder: str, **fields: Any) -> WatchRule:
    if paths.owns(Path(folder).expanduser()):
        raise ValidationError(
            f"{folder} is this bench's own data or configuration folder (or inside it); "
            "nothing there is ever captured: watch the instrument's output folder instead")
    rules = load_rules(paths)
    rule_id = derive_rule_id(folder, (r.id for r in rules))
    rule = validate_rule({**fields, "id": rule_id, "path": folder})
    rule.check_profile()
    save_rules(paths, [*rules, rule])
    return rule


def update_rule(paths: BenchPaths, ref: str, changes: Mapping[str, Any]) -> WatchRule:
    rules = load_rules(paths)
    current = find_rule(rules, ref)
    data = {**current.to_config(), **changes, "id": current.id}
    updated = validate_rule(data)
    if updated.profile != current.profile or updated.profile_options != current.profile_options:
        updated.check_profile()
    save_rules(paths, [updated if r.id == current.id else r for r in rules])
    return updated


def remove_rule(paths: BenchPaths, ref: str) -> WatchRule:
    rules = load_rules(paths)
    current = find_rule(rules, ref)
    save_rules(paths, [r for r in rules if r.id != current.id])
    return current
