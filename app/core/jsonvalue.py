"""Strict JSON for datapoint values: what MongoDB and every client can hold.

Python's ``json`` happily writes ``NaN`` and ``Infinity`` (not JSON) and the MADSci client
would send them; bytes, sets, tuples-as-keys and arbitrary objects fail late and obscurely.
We check up front and name the offending place, so nothing half-valid is stored.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from app.core.errors import ValueNotJSONError, ValueTooLargeError

#: MongoDB refuses documents over 16 MiB; leave room for the rest of the document.
MAX_VALUE_BYTES: Final[int] = 15 * 1024 * 1024
#: MongoDB refuses documents nested deeper than 100 levels.
MAX_DEPTH: Final[int] = 90


def check_json_value(value: Any, where: str = "value", depth: int = 0) -> None:
    """Raise ValueNotJSONError naming the first place that is not strict JSON."""
    if depth > MAX_DEPTH:
        raise ValueNotJSONError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueNotJSONError(
                f"{where} is {value!r}, which JSON cannot represent; use null or a number"
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueNotJSONError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            check_json_value(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    hint = ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        hint = "; store binary data as a file datapoint instead"
    elif isinstance(value, (set, frozenset)):
        hint = "; convert it to a list"
    raise ValueNotJSONError(
        f"{where} is a {type(value).__name__}, which is not JSON{hint}"
    )


def dump_json_value(value: Any) -> str:
    """Validate and serialise a value compactly; enforce the central size limit."""
    check_json_value(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800": not text
        raise ValueNotJSONError(
            f"the value has a lone UTF-16 surrogate \\u{ord(text[exc.start]):04x}, which "
            f"is not Unicode text") from None
    if size > MAX_VALUE_BYTES:
        raise ValueTooLargeError(
            f"the value is {size / 1048576:.1f} MiB of JSON; a central MongoDB document "
            f"holds at most 16 MiB: store it as a file datapoint instead"
        )
    return text
