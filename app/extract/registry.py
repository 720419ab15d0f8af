"""Which extractors exist: plug-ins from the ``benchdata.extractors`` entry point group,
tried first, then the built-in ones (``app/extract/builtin``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Optional

from app.extract.api import Extractor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final[str] = "benchdata.extractors"
#: Built-in extractors, in the order they are tried (the most specific first: an ``acqus``
#: file is JCAMP-DX text too).
BUILTIN: Final[tuple[str, ...]] = (
    "app.extract.builtin.tiff:TiffExtractor",
    "app.extract.builtin.hdf5:Hdf5Extractor",
    "app.extract.builtin.images:ImageExtractor",
    "app.extract.builtin.bruker:BrukerAcqusExtractor",
    "app.extract.builtin.jcamp:JcampExtractor",
    "app.extract.builtin.delimited:DelimitedExtractor",
    "app.extract.builtin.archive:ZipDatasetExtractor",
)


@dataclass
class Loaded:
    """An extractor and where it comes from (for ``benchdata formats``)."""

    extractor: Optional[Extractor]
    name: str
    source: str
    error: Optional[str] = None

    @property
    def formats(self) -> str:
        return str(getattr(self.extractor, "formats", "") or "")

    def missing(self) -> list[str]:
        """The modules this extractor needs that are not installed."""
        needed = getattr(self.extractor, "requires", ()) or ()
        return [module for module in needed if importlib.util.find_spec(module) is None]


def _instance(obj: Any) -> Extractor:
    extractor = obj() if isinstance(obj, type) else obj
    for attribute in ("name", "matches", "extract"):
        if not hasattr(extractor, attribute):
            raise TypeError(f"it has no {attribute!r} (see docs/extractors.md)")
    return extractor  # type: ignore[no-any-return]


def _builtin(spec: str) -> Loaded:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    extractor = _instance(getattr(module, attribute))
    return Loaded(extractor, extractor.name, "built-in")


def _plugins() -> list[Loaded]:
    loaded: list[Loaded] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"plug-in {entry.dist.name if entry.dist else entry.value}"
        try:
            extractor = _instance(entry.load())
        except Exception as exc:  # a broken plug-in must not stop the others
            log.warning("extractor plug-in %s (%s) cannot be loaded: %s",
                        entry.name, entry.value, exc)
            loaded.append(Loaded(None, entry.name, source, error=str(exc) or repr(exc)))
            continue
        loaded.append(Loaded(extractor, str(extractor.name), source))
    return loaded


def load_all() -> list[Loaded]:
    """Every extractor in the order they are tried (plug-ins, then built-ins)."""
    loaded = _plugins()
    for spec in BUILTIN:
        try:
            loaded.append(_builtin(spec))
        except Exception as exc:  # a broken install must not stop the other extractors
            log.warning("built-in extractor %s cannot be loaded: %s", spec, exc)
            loaded.append(Loaded(None, spec.rsplit(":", 1)[-1], "built-in", error=str(exc)))
    return loaded


def usable(loaded: list[Loaded]) -> list[Extractor]:
    return [item.extractor for item in loaded if item.extractor is not None]


def choose(extractors: list[Extractor], path: Path, head: bytes) -> Optional[Extractor]:
    """The first extractor that says it reads this file."""
    for extractor in extractors:
        try:
            if extractor.matches(path, head):
                return extractor
        except Exception:  # a plug-in's matches() failing means "not mine"
            log.warning("extractor %s failed in matches(); skipped", extractor.name,
                        exc_info=True)
    return None
