"""``$regex`` on RE2 (linear time), installed into SQLite as ``regexp()``."""

from __future__ import annotations

import functools
import re
import sqlite3
from typing import Any, Final, Optional

import re2

from app.core.query.limits import _REGEX_CACHE_SIZE, MAX_REGEX_MEMORY_BYTES


# -- regular expressions: RE2 inside SQLite --------------------------------------------
#
# ``$regex`` runs on RE2, whose matching time is linear in the text's length whatever the
# pattern (Python's ``re`` backtracks: ``^(a+)+$`` against 33 characters never ends, and it
# holds the GIL meanwhile). RE2 cannot run what needs backtracking — backreferences,
# lookaround, atomic groups, possessive quantifiers, recursion — so such patterns are
# refused at parse time with a sentence naming the construct.

_RE2_ANCHOR: Final[Any] = re2._re2.RE2.Anchor.UNANCHORED
_RE2_NO_MATCH: Final[tuple[int, int]] = (-1, -1)
_RE2_SYNTAX: Final[str] = (
    "$regex uses RE2 syntax, which runs in linear time and has no backtracking "
    "(see docs/query-language.md)"
)
#: What a fragment RE2 refuses is called, by how the fragment starts.
_CONSTRUCTS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(start), name) for start, name in (
        (r"\\[1-9]", "a backreference"),
        (r"\\[kg]|\(\?P=", "a named backreference"),
        (r"\(\?=", "a lookahead"),
        (r"\(\?!", "a negative lookahead"),
        (r"\(\?<=", "a lookbehind"),
        (r"\(\?<!", "a negative lookbehind"),
        (r"\(\?>", "an atomic group"),
        (r"\(\?\(", "a conditional group"),
        (r"\(\?(?:R|[0-9]|&|P>|[+-][0-9])", "a recursive pattern"),
        (r"\(\?[a-zA-Z-]*x", "the inline x flag (give it in $options instead)"),
        (r"[*+?}]\+", "a possessive quantifier"),
        (r"\\Z", r"\Z (use \z, or $ without the m option)"),
        (r"\{", "a repetition count above 1000"),
    )
)


class _RegexRefused(Exception):
    """RE2 cannot compile a pattern; ``str()`` says why, for a QueryError."""


def _re2_options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_REGEX_MEMORY_BYTES
    options.never_capture = True  # only "does it match" is asked
    options.log_errors = False
    return options


_RE2_OPTIONS: Final[Any] = _re2_options()


def _without_extended_syntax(pattern: str) -> str:
    r"""PCRE's ``x`` option, which RE2 lacks: drop unescaped whitespace and ``#`` comments
    outside character classes (and outside ``\Q…\E``)."""
    out: list[str] = []
    index, in_class, length = 0, False, len(pattern)
    while index < length:
        char = pattern[index]
        if char == "\\" and pattern.startswith("\\Q", index):
            end = pattern.find("\\E", index + 2)
            end = length if end < 0 else end + 2
            out.append(pattern[index:end])
            index = end
            continue
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            if pattern.startswith("[:", index):
                end = pattern.find(":]", index + 2)
                end = length if end < 0 else end + 2
                out.append(pattern[index:end])
                index = end
                continue
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            # A ``]`` right after ``[`` or ``[^`` is a literal, not the end of the class.
            for literal in ("^", "]"):
                if pattern.startswith(literal, index):
                    out.append(literal)
                    index += 1
            continue
        elif char in " \t\n\r\f\v":
            index += 1
            continue
        elif char == "#":
            end = pattern.find("\n", index)
            index = length if end < 0 else end + 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _construct(pattern: str, fragment: str) -> Optional[str]:
    """The construct RE2 stopped at. RE2 quotes only its start ("(?P" for "(?P=name)"),
    so each place the fragment occurs is looked at with what follows it."""
    at = pattern.find(fragment) if fragment else -1
    while at >= 0:
        for start, name in _CONSTRUCTS:
            if start.match(pattern, at):
                return name
        at = pattern.find(fragment, at + 1)
    return None


def _refusal(pattern: str, error: str) -> str:
    """Why RE2 refused ``pattern``: the construct it uses, or RE2's own words."""
    if error.startswith("pattern too large"):
        return (f"$regex {pattern!r} is too complex (it would need more than "
                f"{MAX_REGEX_MEMORY_BYTES // (1024 * 1024)} MiB); simplify it")
    name = _construct(pattern, error.partition(": ")[2])
    if name:
        return f"$regex {pattern!r} uses {name}, which the bench cannot run: {_RE2_SYNTAX}"
    return f"invalid $regex {pattern!r}: {error}; {_RE2_SYNTAX}"


@functools.lru_cache(maxsize=_REGEX_CACHE_SIZE)
def _compile(pattern: str, flags: str) -> Any:
    """The RE2 program for ``pattern`` with MongoDB ``$options`` letters (raises
    _RegexRefused)."""
    body = _without_extended_syntax(pattern) if "x" in flags else pattern
    inline = "".join(letter for letter in flags if letter in "ims")
    source = f"(?{inline}){body}" if inline else body
    regex = re2._re2.RE2(source.encode("utf-8", "surrogatepass"), _RE2_OPTIONS)
    if not regex.ok():
        raise _RegexRefused(_refusal(pattern, regex.error().decode("utf-8", "replace")))
    return regex


def _regexp(pattern: Optional[str], flags: Optional[str], text: Any) -> Optional[int]:
    if pattern is None:
        return None
    if not isinstance(text, str):
        return 0  # MongoDB's $regex only ever matches strings
    data = text.encode("utf-8", "surrogatepass")
    span = _compile(pattern, flags or "").Match(_RE2_ANCHOR, data, 0, len(data))[0]
    return 0 if span == _RE2_NO_MATCH else 1


def _regexp_operator(pattern: Optional[str], text: Any) -> Optional[int]:
    """``text REGEXP pattern`` (SQLite calls regexp(pattern, text))."""
    return _regexp(pattern, "", text)


def register_functions(dbapi_connection: sqlite3.Connection) -> None:
    """Install ``regexp(pattern, flags, text)`` (and the 2-argument REGEXP operator).

    Call it for every connection that runs translated queries; the store does so from
    its connection hook.
    """
    dbapi_connection.create_function("regexp", 3, _regexp, deterministic=True)
    dbapi_connection.create_function("regexp", 2, _regexp_operator, deterministic=True)
