"""``DataClient``: MADSci's Python API, on the bench's local store.

Method names and behaviour follow ``madsci.client.DataClient`` 0.8.1, so automation code
written for MADSci runs here unchanged and captures offline; the bench extras (batches,
edits, tombstones, exports, names) sit beside them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import anyio.to_thread

from app.core.errors import NotFoundError
from app.core.export import export_datapoints
from app.core.filestore import ProgressCallback
from app.core.ids import is_ulid
from app.core.models import DataPoint, OwnershipInfo
from app.core.query import MAX_CENTRAL_RESULTS
from app.core.store import Page
from app.service import BenchService

log = logging.getLogger(__name__)


class DataClient:
    """Capture and read datapoints on this bench, with or without a network."""

    def __init__(self, data_dir: Optional[os.PathLike[str] | str] = None, *,
                 service: Optional[BenchService] = None) -> None:
        self._owns_service = service is None
        self.service = service or BenchService(data_dir)

    def close(self) -> None:
        if self._owns_service:
            self.service.close()

    def __enter__(self) -> "DataClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- MADSci's DataClient API -------------------------------------------------------

    def submit_datapoint(self, datapoint: DataPoint, *,
                         progress: Optional[ProgressCallback] = None) -> DataPoint:
        """Capture a datapoint (a file is copied into the store); returns it as stored."""
        return self.service.submit(datapoint, progress=progress)

    def get_datapoint(self, datapoint_id: str) -> DataPoint:
        """The datapoint; raises ``NotFoundError`` (a ``KeyError``) if unknown."""
        return self.service.get(str(datapoint_id))

    def get_datapoint_value(self, datapoint_id: str) -> Any:
        """The JSON value, or the file's bytes (a file only the central store holds is
        fetched and verified first; ``FileNotReachableError`` says why when it cannot be)."""
        return self.service.value(str(datapoint_id))

    def save_datapoint_value(self, datapoint_id: str, output_filepath: os.PathLike[str] | str) -> None:
        """Write the file (byte-exact, fetched like ``get_datapoint_value``) or the JSON
        value (as JSON text) to a path."""
        self.service.save_value(str(datapoint_id), output_filepath)

    def get_datapoints(self, number: int = 10) -> list[DataPoint]:
        """The newest ``number`` datapoints, newest first (``0`` means all)."""
        return self.service.latest(number)

    def query_datapoints(self, selector: Mapping[str, Any], *,
                         central: bool = False) -> dict[str, DataPoint]:
        """Datapoints matching a Mongo-style selector, keyed by id (newest first).

        ``central=True`` asks the central store instead (datapoints outside this bench's
        pull scope too; the newest 1000 at most, none kept here until
        ``get_datapoint`` fetches one); CentralUnavailableError when it cannot answer."""
        if central:
            return {dp.datapoint_id: dp for dp in
                    self.service.query_central(selector, limit=MAX_CENTRAL_RESULTS)}
        return {dp.datapoint_id: dp for dp in self.service.iter_query(selector)}

    def get_datapoints_by_ids(self, datapoint_ids: Sequence[str]) -> dict[str, DataPoint]:
        """The datapoints that exist among ``datapoint_ids``, keyed by id."""
        return {dp.datapoint_id: dp for dp in self.service.store.get_many(list(datapoint_ids))}

    def get_datapoint_metadata(self, datapoint_id: str) -> dict[str, Any]:
        """Label, type, timestamp, ownership and file facts, without the value."""
        datapoint = self.get_datapoint(datapoint_id)
        metadata: dict[str, Any] = {
            "datapoint_id": datapoint.datapoint_id,
            "label": datapoint.label,
            "data_type": datapoint.data_type,
            "data_timestamp": datapoint.data_timestamp,
            "ownership_info": datapoint.ownership_info,
            "custom_metadata": dict(datapoint.custom_metadata),
        }
        for field in ("size_bytes", "content_type", "filename", "sha256", "path"):
            if getattr(datapoint, field, None) is not None:
                metadata[field] = getattr(datapoint, field)
        return metadata

    def get_datapoints_metadata(self, datapoint_ids: list[str]) -> dict[str, dict[str, Any]]:
        """``get_datapoint_metadata`` for each id, keyed by id; ids that cannot be read are
        left out with a warning in the log (as MADSci does)."""
        result: dict[str, dict[str, Any]] = {}
        for datapoint_id in datapoint_ids:
            try:
                result[datapoint_id] = self.get_datapoint_metadata(datapoint_id)
            except Exception as exc:  # noqa: BLE001 - MADSci skips what it cannot read
                log.warning("no metadata for datapoint %s: %s", datapoint_id, exc)
        return result

    def extract_datapoint_ids_from_action_result(self, action_result: Any) -> list[str]:
        """The unique datapoint ids anywhere in an ActionResult's ``datapoints`` (ULID
        strings, or objects with a ``datapoint_id``), in the order first found."""
        datapoints = (action_result.get("datapoints") if isinstance(action_result, Mapping)
                      else getattr(action_result, "datapoints", None))
        if not datapoints:
            return []
        if hasattr(datapoints, "model_dump"):  # MADSci's ActionDatapoints (pydantic)
            datapoints = datapoints.model_dump(mode="json")
        return list(dict.fromkeys(_datapoint_ids_in(datapoints)))

    # MADSci's async methods. The store is local, so there is no network to wait for:
    # each runs the same call on a worker thread so the event loop is never blocked.
    # ``timeout`` is accepted for MADSci's signatures; local calls do not time out.

    async def async_get_datapoint(self, datapoint_id: str,
                                  timeout: Optional[float] = None) -> DataPoint:
        return await anyio.to_thread.run_sync(self.get_datapoint, datapoint_id)

    async def async_get_datapoints(self, number: int = 10,
                                   timeout: Optional[float] = None) -> list[DataPoint]:
        return await anyio.to_thread.run_sync(self.get_datapoints, number)

    async def async_query_datapoints(self, selector: Mapping[str, Any],
                                     timeout: Optional[float] = None) -> dict[str, DataPoint]:
        return await anyio.to_thread.run_sync(self.query_datapoints, selector)

    async def async_submit_datapoint(self, datapoint: DataPoint,
                                     timeout: Optional[float] = None) -> DataPoint:
        return await anyio.to_thread.run_sync(self.submit_datapoint, datapoint)

    # -- what a bench adds -------------------------------------------------------------

    def submit_datapoints(self, datapoints: Sequence[DataPoint]) -> list[DataPoint]:
        """Capture many datapoints in one transaction: all are stored or none."""
        return self.service.submit_many(list(datapoints))

    def ownership(self, **names_or_ids: Optional[str]) -> OwnershipInfo:
        """``ownership(experiment="EXP42", user="alice")``: ids for names, remembered."""
        return self.service.ownership(**names_or_ids)

    def update_datapoint(self, datapoint_id: str, *, label: Optional[str] = None,
                         metadata: Optional[Mapping[str, str]] = None,
                         remove_metadata: Iterable[str] = (),
                         ownership: Optional[Mapping[str, Optional[str]]] = None) -> DataPoint:
        """Change the label, custom metadata and/or ownership; the edit syncs as a new
        revision. ``ownership={"experiment": "EXP43"}`` moves the datapoint to EXP43."""
        return self.service.update(str(datapoint_id), label=label, set_metadata=metadata,
                                   remove_metadata=remove_metadata, ownership=ownership)

    def delete_datapoint(self, datapoint_id: str) -> None:
        """Delete (a tombstone that sync propagates to the central store)."""
        self.service.delete(str(datapoint_id))

    def count_datapoints(self, selector: Optional[Mapping[str, Any]] = None) -> int:
        return self.service.count(selector)

    def query_page(self, selector: Optional[Mapping[str, Any]] = None, *, sort: Any = None,
                   limit: int = 100, cursor: Optional[str] = None) -> Page:
        """One page of a query, with the cursor of the next page."""
        return self.service.query(selector, sort=sort, limit=limit, cursor=cursor)

    def search(self, text: str, selector: Optional[Mapping[str, Any]] = None, *,
               limit: int = 100) -> dict[str, DataPoint]:
        """Full-text search (labels, file names, names, metadata, strings inside values),
        newest first, optionally narrowed by a selector; shaped like ``query_datapoints``."""
        page = self.service.search(text, selector, limit=limit)
        return {dp.datapoint_id: dp for dp in page.items}

    def export(self, selector: Optional[Mapping[str, Any]], path: os.PathLike[str] | str,
               fmt: Optional[str] = None, *, sort: Any = None) -> int:
        """Export matching datapoints to CSV or Parquet (by ``fmt`` or the suffix)."""
        return export_datapoints(
            self.service.with_names(self.service.iter_query(selector, sort=sort)), Path(path), fmt)

    def has_datapoint(self, datapoint_id: str) -> bool:
        try:
            self.get_datapoint(datapoint_id)
        except NotFoundError:
            return False
        return True


def _datapoint_ids_in(data: Any) -> Iterator[str]:
    """Every datapoint id in nested dicts and lists (MADSci's ``extract_datapoint_ids``:
    ULID strings, in either case, and objects' ``datapoint_id``)."""
    if isinstance(data, str):
        if is_ulid(data):
            yield data
    elif isinstance(data, Mapping):
        for item in data.values():
            yield from _datapoint_ids_in(item)
    elif isinstance(data, (list, tuple)):
        for item in data:
            yield from _datapoint_ids_in(item)
    elif getattr(data, "datapoint_id", None):
        yield data.datapoint_id
