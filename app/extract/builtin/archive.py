"""Zip archives, as watched folders capture a dataset folder (a Bruker experiment, a
Micro-Manager acquisition …): the members, and the header of the dataset's main instrument
file, read by the extractor that reads that file on its own.

The main file is a Bruker ``acqus`` if there is one, else the first member (shallowest
first, then by name) another extractor reads. Its fields are kept at the top level, so
``custom_metadata.extracted.pulse_program`` finds a zipped experiment as it finds a bare
``acqus``; ``container`` and ``main_member`` say where they came from.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Final, Optional

ZIP_MAGIC: Final[tuple[bytes, ...]] = (b"PK\x03\x04", b"PK\x05\x06")
#: Members looked at for a main file, and the largest one unpacked to read it.
MAX_CANDIDATES: Final[int] = 200
MAX_MEMBER_BYTES: Final[int] = 64 * 1024 * 1024
MAX_LISTED: Final[int] = 40
#: Members preferred as the dataset's main file, by name.
PREFERRED: Final[tuple[str, ...]] = ("acqus", "metadata.txt")


class ZipDatasetExtractor:
    name = "zip-dataset"
    formats = ("Zip archives and watched-folder datasets: members, and the header of the "
               "main file inside (e.g. a Bruker experiment's acqus)")
    requires: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._others: Optional[list[Any]] = None

    def matches(self, path: Path, head: bytes) -> bool:
        return head.startswith(ZIP_MAGIC)

    def extract(self, path: Path) -> dict[str, Any]:
        with zipfile.ZipFile(path) as bundle:
            members = [info for info in bundle.infolist() if not info.is_dir()]
            out: dict[str, Any] = {
                "format": "zip",
                "members": len(members),
                "total_bytes": sum(info.file_size for info in members),
                "member_list": [info.filename for info in members[:MAX_LISTED]],
            }
            main = self._main_member(bundle, members)
            if main is not None:
                info, extractor = main
                fields = _extract_member(bundle, info, extractor)
                out.update({key: value for key, value in fields.items()
                            if key not in ("members", "total_bytes", "member_list")})
                out["container"] = "zip"
                out["main_member"] = info.filename
                out["main_extractor"] = extractor.name
        return out

    def _extractors(self) -> list[Any]:
        if self._others is None:
            from app.extract import registry

            self._others = [extractor for extractor in registry.usable(registry.load_all())
                            if extractor.name != self.name]
        return self._others

    def _main_member(self, bundle: zipfile.ZipFile,
                     members: list[zipfile.ZipInfo]) -> Optional[tuple[zipfile.ZipInfo, Any]]:
        from app.extract import registry
        from app.extract.api import HEAD_BYTES

        def rank(info: zipfile.ZipInfo) -> tuple[int, int, str]:
            name = PurePosixPath(info.filename).name.lower()
            preferred = PREFERRED.index(name) if name in PREFERRED else len(PREFERRED)
            return preferred, info.filename.count("/"), info.filename

        readable = [info for info in members if 0 < info.file_size <= MAX_MEMBER_BYTES]
        for info in sorted(readable, key=rank)[:MAX_CANDIDATES]:
            with bundle.open(info) as stream:
                head = stream.read(HEAD_BYTES)
            if head.startswith(ZIP_MAGIC):
                continue  # no archives within archives
            extractor = registry.choose(self._extractors(), Path(info.filename), head)
            if extractor is not None:
                return info, extractor
        return None


def _extract_member(bundle: zipfile.ZipFile, info: zipfile.ZipInfo,
                    extractor: Any) -> dict[str, Any]:
    """Unpack one member (bounded) under its own name and extract it."""
    with tempfile.TemporaryDirectory(prefix="benchdata-extract-") as folder:
        target = Path(folder) / (PurePosixPath(info.filename).name or "member")
        with bundle.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        result: dict[str, Any] = extractor.extract(target)
        return result
