"""HDF5 and NeXus (``h5py``): the tree's groups and datasets (shapes and dtypes, bounded),
and NeXus's ``NX_class``, ``definition``, ``start_time`` and sample name. No data is read
beyond small scalar fields."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Final, Optional

from app.extract.builtin import text_of

HDF5_MAGIC: Final[bytes] = b"\x89HDF\r\n\x1a\n"
#: Objects walked, and datasets listed, at most.
MAX_OBJECTS: Final[int] = 2000
MAX_LISTED: Final[int] = 40
#: Scalar NeXus fields read as text (a few bytes each).
_ENTRY_FIELDS: Final[tuple[str, ...]] = ("definition", "start_time", "end_time", "title",
                                         "experiment_identifier", "program_name")


class Hdf5Extractor:
    name = "hdf5"
    formats = "HDF5 and NeXus (.h5, .hdf5, .nxs, .nx5)"
    requires = ("h5py",)

    def matches(self, path: Path, head: bytes) -> bool:
        # The superblock is at 0, or at 512, 1024 … when a user block precedes it.
        return head.startswith(HDF5_MAGIC) or any(
            head[offset:offset + 8] == HDF5_MAGIC for offset in (512, 1024, 2048))

    def extract(self, path: Path) -> dict[str, Any]:
        import h5py

        with h5py.File(path, "r") as root:
            out: dict[str, Any] = {"format": "hdf5"}
            version = root.attrs.get("HDF5_Version")
            out["format_version"] = text_of(version) if version is not None else \
                f"superblock {root.id.get_create_plist().get_version()[0]}"
            groups, datasets, listed, classes = _walk(root, h5py)
            out["groups"] = groups
            out["datasets"] = datasets
            out["dataset_list"] = listed
            nexus = _nexus(root, classes, h5py)
            if nexus:
                out["format"] = "nexus"
                out.update(nexus)
        return out


def _walk(root: Any, h5py: Any) -> tuple[int, int, list[str], dict[str, str]]:
    """Counts of groups and datasets, the first datasets as "path shape dtype", and the
    ``NX_class`` of each group (breadth first, at most MAX_OBJECTS objects)."""
    groups = datasets = 0
    listed: list[str] = []
    classes: dict[str, str] = {}
    todo: deque[Any] = deque([root])
    seen = 0
    while todo and seen < MAX_OBJECTS:
        group = todo.popleft()
        for name in group:
            seen += 1
            if seen > MAX_OBJECTS:
                break
            item = group.get(name, getlink=False)
            if isinstance(item, h5py.Group):
                groups += 1
                nx_class = item.attrs.get("NX_class")
                if nx_class is not None:
                    classes[item.name] = text_of(nx_class)
                todo.append(item)
            elif isinstance(item, h5py.Dataset):
                datasets += 1
                if len(listed) < MAX_LISTED:
                    shape = "x".join(str(n) for n in item.shape) or "scalar"
                    listed.append(f"{item.name} {shape} {item.dtype}")
    return groups, datasets, listed, classes


def _scalar(group: Any, name: str, h5py: Any) -> Optional[str]:
    item = group.get(name)
    if not isinstance(item, h5py.Dataset) or item.size > 64:
        return None
    return text_of(item[()])


def _nexus(root: Any, classes: dict[str, str], h5py: Any) -> dict[str, Any]:
    """NeXus facts of the first NXentry (empty when the file is not NeXus)."""
    if not classes and root.attrs.get("NX_class") is None:
        return {}
    out: dict[str, Any] = {}
    for attribute in ("NeXus_version", "HDF5_Version", "creator", "file_time"):
        value = root.attrs.get(attribute)
        if value is not None:
            out[f"nexus_{attribute.lower()}"] = text_of(value)
    if "nexus_nexus_version" in out:
        out["format_version"] = f"NeXus {out.pop('nexus_nexus_version')}"
    out["nx_classes"] = sorted(set(classes.values()))
    entries = [path for path, nx_class in classes.items() if nx_class == "NXentry"]
    if not entries:
        return out
    entry = root[entries[0]]
    out["entry"] = entries[0]
    for field in _ENTRY_FIELDS:
        value = _scalar(entry, field, h5py)
        if value is not None:
            out[field] = value
    for path, nx_class in classes.items():
        if not path.startswith(entries[0] + "/"):
            continue
        if nx_class == "NXsample" and "sample_name" not in out:
            out["sample_name"] = _scalar(root[path], "name", h5py)
        elif nx_class == "NXinstrument" and "instrument_name" not in out:
            out["instrument_name"] = _scalar(root[path], "name", h5py)
    return out
