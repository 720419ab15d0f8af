"""PNG and JPEG (Pillow): size, mode and the EXIF date and device. Only the header is
decoded, never the pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

PNG_MAGIC: Final[bytes] = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC: Final[bytes] = b"\xff\xd8\xff"
#: EXIF tags: in the first IFD, and in the Exif sub-IFD (0x8769).
_IFD0_TAGS: Final[dict[int, str]] = {271: "make", 272: "model", 305: "software",
                                     306: "datetime"}
_EXIF_TAGS: Final[dict[int, str]] = {36867: "datetime_original", 33434: "exposure_time",
                                     34855: "iso", 37386: "focal_length"}
EXIF_IFD: Final[int] = 0x8769


class ImageExtractor:
    name = "image"
    formats = "PNG, JPEG (size, EXIF date and device)"
    requires = ("PIL",)

    def matches(self, path: Path, head: bytes) -> bool:
        return head.startswith(PNG_MAGIC) or head.startswith(JPEG_MAGIC)

    def extract(self, path: Path) -> dict[str, Any]:
        from PIL import Image

        with Image.open(path) as image:
            out: dict[str, Any] = {
                "format": str(image.format or "image").lower(),
                "width": image.width,
                "height": image.height,
                "mode": image.mode,
            }
            if image.format == "JPEG":
                out["format_version"] = "JFIF" if "jfif" in image.info else "JPEG"
            elif image.format == "PNG":
                out["format_version"] = "PNG 1.2"
            dpi = image.info.get("dpi")
            if dpi:
                out["dpi"] = f"{float(dpi[0]):g}x{float(dpi[1]):g}"
            exif = image.getexif()
            found: dict[str, Any] = {}
            for tag, name in _IFD0_TAGS.items():
                if tag in exif:
                    found[name] = _clean(exif[tag])
            sub = exif.get_ifd(EXIF_IFD)
            for tag, name in _EXIF_TAGS.items():
                if tag in sub:
                    found[name] = _clean(sub[tag])
            if found:
                out["exif"] = found
                if found.get("make") or found.get("model"):
                    out["device"] = " ".join(str(found[key]) for key in ("make", "model")
                                             if found.get(key))
                taken = found.get("datetime_original") or found.get("datetime")
                if taken:
                    out["date"] = str(taken)
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip("\x00 ").strip()
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)  # IFDRational
    except (TypeError, ValueError):
        return str(value)
