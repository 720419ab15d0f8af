"""Path and label templates: folder and file-name conventions -> metadata.

A *path template* describes where an instrument puts its files, relative to the watched
folder, one ``/``-separated segment per folder level::

    {experiment}/{sample}/*            EXP42/S7/run.csv -> experiment=EXP42, sample=S7
    **/{date}_{sample}.csv             a/b/2024-05-01_S7.csv -> date=2024-05-01, sample=S7

``{field}`` captures a non-empty part of one segment (shortest match, so ``{a}_{b}``
splits at the first underscore), ``*`` matches any part of one segment, ``?`` one
character, and a segment that is exactly ``**`` matches any number of folders (including
none). ``{{`` and ``}}`` are literal braces. The template must match the whole relative
path; a path that does not match is still captured, flagged ``template_match=no``.

Fields named after an ownership kind (``experiment``, ``experiment_id``, ``user`` ...)
become ownership ids through the names-and-ids mapping; the others become custom
metadata. A *label template* is ``str.format`` text over the file's own variables
(``{name}``, ``{stem}`` ...), the path template's fields and the rule's fixed metadata.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Final, Optional

from app.core.errors import ValidationError
from app.core.ids import OWNERSHIP_KINDS

#: Variables every label template may use, whatever the path template says.
BUILTIN_VARIABLES: Final[tuple[str, ...]] = (
    "name", "stem", "ext", "suffix", "parent", "relpath", "rule", "date", "time",
)
_FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TEMPLATE_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|\*|\?|[{}]")


def ownership_kind(key: str) -> Optional[str]:
    """``experiment`` / ``experiment_id`` -> ``experiment``; None for other keys."""
    kind = key.removesuffix("_id")
    return kind if kind in OWNERSHIP_KINDS else None


def split_fields(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split fields into (ownership kind -> name or id, custom metadata)."""
    ownership: dict[str, str] = {}
    custom: dict[str, str] = {}
    for key, value in values.items():
        kind = ownership_kind(key)
        if kind is not None:
            if value.strip():
                ownership[kind] = value.strip()
        else:
            custom[key] = value
    return ownership, custom


class PathTemplate:
    """A compiled path template (see the module docstring for the syntax)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.fields: tuple[str, ...] = ()
        self._regex = re.compile(self._compile(text))

    def _compile(self, text: str) -> str:
        cleaned = text.strip().strip("/")
        if not cleaned:
            raise ValidationError("the path template is empty; give e.g. '{experiment}/{sample}/*'")
        fields: list[str] = []
        parts: list[str] = []
        segments = cleaned.split("/")
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if segment == "**":
                # Any number of whole folders (zero included); a trailing ** also takes the file.
                parts.append(r"(?:[^/]+(?:/|\Z))*" if last else r"(?:[^/]+/)*")
                continue
            if not segment:
                raise ValidationError(f"the path template {text!r} has an empty folder level (//)")
            parts.append(self._segment(segment, fields, text) + ("" if last else "/"))
        self.fields = tuple(dict.fromkeys(fields))
        return "".join(parts)

    @staticmethod
    def _segment(segment: str, fields: list[str], text: str) -> str:
        out: list[str] = []
        position = 0
        for token in _TEMPLATE_TOKEN.finditer(segment):
            out.append(re.escape(segment[position:token.start()]))
            position = token.end()
            matched = token.group(0)
            if matched == "{{":
                out.append(re.escape("{"))
            elif matched == "}}":
                out.append(re.escape("}"))
            elif matched == "*":
                out.append(r"[^/]*")
            elif matched == "?":
                out.append(r"[^/]")
            elif matched in ("{", "}"):
                raise ValidationError(
                    f"the path template {text!r} has an unmatched {matched!r}; "
                    "write {{ or }} for a literal brace")
            else:
                name = token.group(1).strip()
                if not _FIELD_NAME.match(name):
                    raise ValidationError(
                        f"the path template {text!r} has a bad field {{{name}}}: use letters, "
                        "digits and underscores, e.g. {experiment} or {sample}")
                if name in fields:
                    out.append(f"(?P={name})")
                else:
                    fields.append(name)
                    out.append(f"(?P<{name}>[^/]+?)")
        out.append(re.escape(segment[position:]))
        return "".join(out)

    def match(self, rel_path: str) -> Optional[dict[str, str]]:
        """The fields of ``rel_path`` (``/``-separated), or None when it does not match."""
        found = self._regex.fullmatch(rel_path)
        if found is None:
            return None
        return {key: value for key, value in found.groupdict().items() if value is not None}

    def __repr__(self) -> str:
        return f"PathTemplate({self.text!r})"


def label_placeholders(template: str) -> list[str]:
    """The variable names a label template uses (raises on broken syntax)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationError(f"the label template {template!r} is not valid ({exc}); "
                              "write e.g. '{stem}' or '{sample} {name}'") from exc
    names: list[str] = []
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        if not _FIELD_NAME.match(field_name):
            raise ValidationError(
                f"the label template {template!r} uses {{{field_name}}}; use plain names such "
                f"as {', '.join('{' + v + '}' for v in BUILTIN_VARIABLES[:4])}")
        names.append(field_name)
    return names


def check_label_template(template: str, known: Iterable[str]) -> None:
    """Refuse a label template that uses a variable nothing provides."""
    available = set(BUILTIN_VARIABLES) | set(known)
    unknown = [name for name in label_placeholders(template) if name not in available]
    if unknown:
        raise ValidationError(
            f"the label template {template!r} uses {', '.join('{' + u + '}' for u in unknown)}, "
            f"which neither the file nor the path template provides; available: "
            f"{', '.join(sorted(available))}")


def file_variables(rel_path: str, *, rule_name: str = "",
                   mtime_ns: Optional[int] = None) -> dict[str, str]:
    """The built-in label variables of one file (or dataset folder)."""
    path = PurePosixPath(rel_path)
    when = datetime.fromtimestamp((mtime_ns or 0) / 1e9, tz=timezone.utc) if mtime_ns else None
    return {
        "name": path.name,
        "stem": path.stem if path.suffix else path.name,
        "ext": path.suffix[1:],
        "suffix": path.suffix,
        "parent": path.parent.name,
        "relpath": rel_path,
        "rule": rule_name,
        "date": when.strftime("%Y-%m-%d") if when else "",
        "time": when.strftime("%H%M%S") if when else "",
    }


@dataclass(frozen=True)
class Described:
    """What a file will be captured as: label, ownership names, custom metadata."""

    label: str
    ownership: dict[str, str] = field(default_factory=dict)
    custom_metadata: dict[str, str] = field(default_factory=dict)
    #: True/False when the rule has a path template, None when it has none.
    template_matched: Optional[bool] = None


def describe(rel_path: str, *, path_template: Optional[PathTemplate], label_template: str,
             fixed_metadata: Mapping[str, str], rule_name: str = "",
             mtime_ns: Optional[int] = None) -> Described:
    """Apply a rule's conventions to one relative path.

    The path template's fields win over the rule's fixed metadata (they are specific to
    the file). A label template that needs a field the path did not provide falls back
    to the file name rather than producing a half-filled label.
    """
    matched: Optional[bool] = None
    fields: dict[str, str] = {}
    if path_template is not None:
        found = path_template.match(rel_path)
        matched = found is not None
        fields = found or {}
    values = {**fixed_metadata, **fields}
    ownership, custom = split_fields(values)
    if matched is not None:
        custom["template_match"] = "yes" if matched else "no"
    variables = {**values, **file_variables(rel_path, rule_name=rule_name, mtime_ns=mtime_ns)}
    # Ownership fields are also available by their bare kind (``{experiment}``).
    for kind, name in ownership.items():
        variables.setdefault(kind, name)
    try:
        label = label_template.format_map(variables).strip()
    except (KeyError, IndexError, ValueError):
        label = ""
    return Described(label=label or variables["name"], ownership=ownership,
                     custom_metadata=custom, template_matched=matched)
