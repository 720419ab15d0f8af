"""TIFF, BigTIFF, OME-TIFF and ImageJ TIFF headers (``tifffile``): no pixel is read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final, Optional

TIFF_MAGIC: Final[tuple[bytes, ...]] = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: OME Pixels attributes worth searching by.
_PIXEL_ATTRIBUTES: Final[tuple[str, ...]] = (
    "DimensionOrder", "Type", "SizeX", "SizeY", "SizeZ", "SizeC", "SizeT",
    "PhysicalSizeX", "PhysicalSizeXUnit", "PhysicalSizeY", "PhysicalSizeYUnit",
    "PhysicalSizeZ", "PhysicalSizeZUnit", "TimeIncrement", "TimeIncrementUnit",
)
_OBJECTIVE_ATTRIBUTES: Final[tuple[str, ...]] = (
    "Manufacturer", "Model", "NominalMagnification", "CalibratedMagnification", "LensNA",
    "Immersion", "Correction", "WorkingDistance",
)


class TiffExtractor:
    name = "tiff"
    formats = "TIFF, BigTIFF, OME-TIFF, ImageJ TIFF (.tif, .tiff, .ome.tif)"
    requires = ("tifffile",)

    def matches(self, path: Path, head: bytes) -> bool:
        return head[:4] in TIFF_MAGIC

    def extract(self, path: Path) -> dict[str, Any]:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            try:
                page = tif.pages.first
            except IndexError:
                raise ValueError("the TIFF file holds no readable image (damaged or "
                                 "truncated)") from None
            out: dict[str, Any] = {
                "format": "ome-tiff" if tif.is_ome else "tiff",
                "format_version": "BigTIFF" if tif.is_bigtiff else "TIFF 6.0",
                "width": page.imagewidth,
                "height": page.imagelength,
                "pixel_type": str(page.dtype) if page.dtype is not None else None,
                "bits_per_sample": page.bitspersample,
                "samples_per_pixel": page.samplesperpixel,
                "photometric": _enum_name(page.photometric),
                "compression": _enum_name(page.compression),
                "software": page.software or None,
                "datetime": page.datetime.isoformat() if page.datetime else None,
            }
            if tif.series:
                series = tif.series[0]
                out["series"] = len(tif.series)
                out["axes"] = series.axes
                out["shape"] = "x".join(str(n) for n in series.shape)
                out["dimensions"] = {axis: size for axis, size in zip(series.axes, series.shape)}
                channels = out["dimensions"].get("C") or out["dimensions"].get("S")
                if channels:
                    out["channels"] = channels
            if tif.is_imagej and tif.imagej_metadata:
                meta = tif.imagej_metadata
                out["imagej"] = {key: meta.get(key) for key in
                                 ("ImageJ", "channels", "slices", "frames", "spacing", "unit")
                                 if isinstance(meta.get(key), (str, int, float))}
            if tif.is_ome and tif.ome_metadata:
                out.update(_ome(tif.ome_metadata))
        return out


def _enum_name(value: Any) -> Optional[str]:
    name = getattr(value, "name", None)
    return str(name).lower() if name else (str(value) if value is not None else None)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _ome(xml: str) -> dict[str, Any]:
    """Pixels, channels, instrument and objective of the first image of an OME-XML."""
    root = ET.fromstring(xml)
    out: dict[str, Any] = {}
    if root.tag.startswith("{"):
        namespace = root.tag[1:].split("}", 1)[0]
        out["ome_schema"] = namespace.rstrip("/").rsplit("/", 1)[-1]
        out["format_version"] = f"OME {out['ome_schema']}"
    images = _children(root, "Image")
    out["ome_images"] = len(images)
    if images:
        image = images[0]
        out["image_name"] = image.get("Name")
        for child in _children(image, "AcquisitionDate"):
            out["acquisition_date"] = (child.text or "").strip() or None
        for pixels in _children(image, "Pixels")[:1]:
            out["ome"] = {attribute: pixels.get(attribute) for attribute in _PIXEL_ATTRIBUTES
                          if pixels.get(attribute) is not None}
            channels = _children(pixels, "Channel")
            names = [channel.get("Name") or channel.get("ID") or "" for channel in channels]
            if names:
                out["channel_names"] = names
            out["channels"] = int(pixels.get("SizeC") or len(channels) or 1)
    for instrument in _children(root, "Instrument")[:1]:
        for microscope in _children(instrument, "Microscope")[:1]:
            out["instrument"] = {key.lower(): microscope.get(key) for key in
                                 ("Manufacturer", "Model", "SerialNumber", "Type")
                                 if microscope.get(key)}
        for objective in _children(instrument, "Objective")[:1]:
            out["objective"] = {key: objective.get(key) for key in _OBJECTIVE_ATTRIBUTES
                                if objective.get(key)}
    return out
