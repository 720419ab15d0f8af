"""Extract one datapoint's file and write the result as an edit of the datapoint.

The result replaces every ``extracted.*`` key in its custom metadata through
``BenchService.update`` (a new revision that sync carries); an unchanged result writes
nothing. The extractor sees the file under its original name (a link in a scratch folder
next to the file store), so ``acqus`` or ``run.csv`` is recognised by name too.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Final, Optional

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from app.core.config import load_section
from app.core.errors import BenchDataError, NotFoundError, ValidationError
from app.core.models import DataPoint
from app.extract.api import PREFIX, error_metadata
from app.extract.process import ExtractorProcess
from app.service import BenchService

log = logging.getLogger(__name__)

SECTION: Final[str] = "extract"


class ExtractSettings(BaseModel):
    """The ``extract`` section of config.json."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: An extraction running longer is stopped and recorded as an error.
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: The extractor process's address-space cap (POSIX); 0 = none.
    memory_mb: int = Field(default=2048, ge=0)
    #: How often the worker looks for new captures (other processes capture too).
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    #: A file whose extraction took the whole service down this often is given up.
    max_attempts: int = Field(default=3, ge=1, le=100)


def load_settings(service: BenchService) -> ExtractSettings:
    data = load_section(service.paths, SECTION) or {}
    try:
        return ExtractSettings.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise ValidationError(f"config.json {SECTION}: {problems}") from None


def scratch_dir(service: BenchService) -> Path:
    return service.paths.data_dir / "extract" / "scratch"


def _named_view(blob: Path, filename: str, scratch: Path) -> tuple[Path, Optional[Path]]:
    """A path with the original file name that reads the blob, and the folder to remove."""
    name = Path(filename or "").name or "file"
    folder = scratch / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    view = folder / name
    for link in (os.symlink, os.link):
        try:
            link(blob, view)
            return view, folder
        except OSError:
            continue
    shutil.rmtree(folder, ignore_errors=True)
    return blob, None


def extract_fields(service: BenchService, process: ExtractorProcess,
                   datapoint: DataPoint) -> dict[str, str]:
    """The ``extracted.*`` metadata for a datapoint's file ({} when no extractor reads it)."""
    try:
        _datapoint, sha256 = service.file_blob(datapoint.datapoint_id)
    except BenchDataError as exc:
        return error_metadata(f"the file cannot be read here: {exc}")
    view, folder = _named_view(service.files.path_for(sha256),
                               str(getattr(datapoint, "filename", "") or ""),
                               scratch_dir(service))
    try:
        reply: dict[str, Any] = process.run(view)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if "fields" in reply:
        return dict(reply["fields"])
    if "error" in reply:
        return dict(reply["error"])
    return {}


def edit_for(datapoint: DataPoint,
             fields: dict[str, str]) -> Optional[tuple[dict[str, str], list[str]]]:
    """The metadata edit (set, remove) that replaces the datapoint's ``extracted.*`` keys
    with ``fields``; None when nothing would change."""
    current = {key: value for key, value in datapoint.custom_metadata.items()
               if key.startswith(PREFIX)}
    if current == fields:
        return None
    return fields, [key for key in current if key not in fields]


def apply_fields(service: BenchService, datapoint: DataPoint,
                 fields: dict[str, str]) -> Optional[DataPoint]:
    """Replace the datapoint's ``extracted.*`` metadata; None when nothing changed."""
    edit = edit_for(datapoint, fields)
    if edit is None:
        return None
    return service.update(datapoint.datapoint_id, set_metadata=edit[0], remove_metadata=edit[1])


def extract_datapoint(service: BenchService, process: ExtractorProcess,
                      datapoint_id: str) -> Optional[dict[str, str]]:
    """Extract and record one datapoint; its fields, or None if it no longer exists."""
    try:
        datapoint = service.get(datapoint_id)
    except NotFoundError:
        return None
    fields = extract_fields(service, process, datapoint)
    try:
        apply_fields(service, datapoint, fields)
    except NotFoundError:  # deleted while its file was being read
        return None
    return fields
