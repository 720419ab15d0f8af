"""Bruker NMR acquisition parameters (``acqus``): pulse program, nucleus, spectrometer
frequency, scans … (a small parser of its JCAMP-style ``##$NAME= value`` records)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from app.extract.builtin.jcamp import header_records, read_header_text

NAMES: Final[frozenset[str]] = frozenset({"acqus", "acqu2s", "acqu3s", "acqu"})
#: acqus parameter → field name.
_PARAMETERS: Final[dict[str, str]] = {
    "PULPROG": "pulse_program", "NUC1": "nucleus", "NUC2": "nucleus2", "SFO1": "sfo1_mhz",
    "BF1": "bf1_mhz", "O1": "o1_hz", "NS": "scans", "DS": "dummy_scans", "TD": "td",
    "SW": "sweep_width_ppm", "SW_h": "sweep_width_hz", "TE": "temperature_k",
    "SOLVENT": "solvent", "INSTRUM": "instrument", "PROBHD": "probe", "AQ_mod": "aq_mode",
    "DATE": "date_epoch", "EXP": "experiment", "RG": "receiver_gain",
}


class BrukerAcqusExtractor:
    name = "bruker-acqus"
    formats = "Bruker NMR acquisition parameters (acqus)"
    requires: tuple[str, ...] = ()

    def matches(self, path: Path, head: bytes) -> bool:
        return path.name.lower() in NAMES or (
            head.lstrip().startswith(b"##TITLE=") and b"##$PULPROG=" in head)

    def extract(self, path: Path) -> dict[str, Any]:
        records = header_records(read_header_text(path))
        parameters = {label[1:]: value for label, value in records if label.startswith("$")}
        if "PULPROG" not in parameters and "NUC1" not in parameters:
            raise ValueError("not a Bruker acqus file: no ##$PULPROG= or ##$NUC1= record")
        out: dict[str, Any] = {"format": "bruker-acqus"}
        for label, value in records:
            if label.upper() in ("TITLE", "ORIGIN", "OWNER"):
                out[label.lower()] = value
            elif label.upper() == "JCAMPDX":
                out["format_version"] = f"JCAMP-DX {value}"
        for parameter, field in _PARAMETERS.items():
            value = parameters.get(parameter)
            if value is None or value.startswith("("):  # an array: not a search field
                continue
            out[field] = _value(value)
        epoch = out.get("date_epoch")
        if isinstance(epoch, (int, float)) and epoch > 0:
            out["date"] = datetime.fromtimestamp(epoch, timezone.utc).isoformat()
        return out


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text
