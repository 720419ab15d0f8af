"""JCAMP-DX spectra: title, data type, x/y units and points (a small parser of the
labelled data records; the data table itself is not decoded)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

SUFFIXES: Final[frozenset[str]] = frozenset({".jdx", ".dx", ".jcamp", ".jcm"})
#: Header records are read from at most this much text.
HEADER_BYTES: Final[int] = 256 * 1024
_RECORD: Final[re.Pattern[str]] = re.compile(r"^\s*##([^=]+)=(.*)$")
#: Normalised labels (upper case, no spaces, dashes, slashes or underscores) → fields.
_FIELDS: Final[dict[str, str]] = {
    "TITLE": "title", "JCAMPDX": "format_version", "DATATYPE": "data_type",
    "DATACLASS": "data_class", "XUNITS": "x_units", "YUNITS": "y_units",
    "NPOINTS": "points", "FIRSTX": "first_x", "LASTX": "last_x", "ORIGIN": "origin",
    "OWNER": "owner", "DATE": "date", "LONGDATE": "long_date",
    "SPECTROMETERDATASYSTEM": "spectrometer", "MOLFORM": "molecular_formula",
    "CASREGISTRYNO": "cas", "BLOCKS": "blocks", "SAMPLEDESCRIPTION": "sample",
}


def normalise_label(label: str) -> str:
    return re.sub(r"[\s\-/_]", "", label).upper()


def header_records(text: str) -> list[tuple[str, str]]:
    """The ``##LABEL=value`` records, labels as written, values stripped."""
    records = []
    for line in text.splitlines():
        match = _RECORD.match(line)
        if match:
            records.append((match.group(1).strip(), match.group(2).strip()))
    return records


def read_header_text(path: Path) -> str:
    with open(path, "rb") as stream:
        return stream.read(HEADER_BYTES).decode("latin-1")


class JcampExtractor:
    name = "jcamp-dx"
    formats = "JCAMP-DX spectra (.jdx, .dx)"
    requires: tuple[str, ...] = ()

    def matches(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in SUFFIXES or head.lstrip().startswith(b"##TITLE=")

    def extract(self, path: Path) -> dict[str, Any]:
        records = header_records(read_header_text(path))
        if not records or normalise_label(records[0][0]) != "TITLE":
            raise ValueError("not a JCAMP-DX file: it does not start with a ##TITLE= record")
        out: dict[str, Any] = {"format": "jcamp-dx"}
        for label, value in records:
            field = _FIELDS.get(normalise_label(label))
            if field and field not in out and value:
                out[field] = _number(value) if field == "points" else value
            if normalise_label(label) == "END":
                break
        return out


def _number(text: str) -> Any:
    try:
        return int(float(text))
    except ValueError:
        return text

