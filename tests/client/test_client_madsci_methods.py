"""MADSci 0.8.1 DataClient methods the bench's ``app.DataClient`` now has too: the async
ones, ``get_datapoints_metadata`` and ``extract_datapoint_ids_from_action_result``."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from app import DataClient, FileDataPoint, NotFoundError, ValueDataPoint
from app.core.ids import new_ulid

#: MADSci 0.8.1's signatures (parameter names and defaults, without ``self``).
MADSCI_SIGNATURES = {
    "async_get_datapoint": ["datapoint_id", "timeout=None"],
    "async_get_datapoints": ["number=10", "timeout=None"],
    "async_query_datapoints": ["selector", "timeout=None"],
    "async_submit_datapoint": ["datapoint", "timeout=None"],
    "get_datapoints_metadata": ["datapoint_ids"],
    "extract_datapoint_ids_from_action_result": ["action_result"],
}


@pytest.mark.parametrize("name,params", MADSCI_SIGNATURES.items())
def test_methods_have_madscis_signatures(name: str, params: list[str]) -> None:
    signature = inspect.signature(getattr(DataClient, name))
    found = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
             for p in list(signature.parameters.values())[1:]]
    assert found == params
    assert inspect.iscoroutinefunction(getattr(DataClient, name)) == name.startswith("async_")


def test_async_methods_answer_as_the_sync_ones_without_blocking_the_loop(
        client: DataClient, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("async", encoding="utf-8")

    async def scenario() -> dict[str, Any]:
        threads: set[int] = set()
        loop_thread = threading.get_ident()
        real_get = client.service.get

        def spying_get(datapoint_id: str) -> Any:
            threads.add(threading.get_ident())
            return real_get(datapoint_id)

        client.service.get = spying_get  # type: ignore[method-assign]
        value = await client.async_submit_datapoint(ValueDataPoint(label="v", value=[1, 2]))
        filed = await client.async_submit_datapoint(FileDataPoint(label="f", path=source))
        fetched = await client.async_get_datapoint(value.datapoint_id, timeout=5)
        latest = await client.async_get_datapoints(number=1)
        queried = await client.async_query_datapoints({"label": "v"})
        return {"value": value, "filed": filed, "fetched": fetched, "latest": latest,
                "queried": queried, "off_loop": loop_thread not in threads and bool(threads)}

    got = asyncio.run(scenario())
    assert got["fetched"] == got["value"] and got["fetched"].value == [1, 2]
    assert got["filed"].sha256 and client.get_datapoint_value(got["filed"].datapoint_id) == b"async"
    assert [dp.datapoint_id for dp in got["latest"]] == \
        [dp.datapoint_id for dp in client.get_datapoints(1)]
    assert list(got["queried"]) == [got["value"].datapoint_id]
    assert got["off_loop"], "the store was read on the event loop's thread"

    async def missing() -> None:
        await client.async_get_datapoint(new_ulid())

    with pytest.raises(NotFoundError):
        asyncio.run(missing())


def test_get_datapoints_metadata_skips_unknown_ids(client: DataClient) -> None:
    first = client.submit_datapoint(ValueDataPoint(label="one", value=1))
    second = client.submit_datapoint(ValueDataPoint(label="two", value=2))
    unknown = new_ulid()
    metadata = client.get_datapoints_metadata([first.datapoint_id, unknown, second.datapoint_id])
    assert list(metadata) == [first.datapoint_id, second.datapoint_id]
    assert metadata[first.datapoint_id] == client.get_datapoint_metadata(first.datapoint_id)
    assert metadata[second.datapoint_id]["label"] == "two"
    assert client.get_datapoints_metadata([]) == {}


class _Datapoints(BaseModel):
    """The shape of MADSci's ActionDatapoints: result name -> id or list of ids."""

    model_config = {"extra": "allow"}


class _ActionResult(BaseModel):
    status: str = "succeeded"
    datapoints: _Datapoints | None = None


def test_extract_datapoint_ids_from_action_result() -> None:
    client_method = DataClient.extract_datapoint_ids_from_action_result
    one, two, three = new_ulid(), new_ulid(), new_ulid()
    result = _ActionResult(datapoints=_Datapoints.model_validate(
        {"single": one, "many": [two, three, one], "nested": {"deep": [three.lower()]},
         "not_an_id": "hello", "number": 7}))
    assert client_method(None, result) == [one, two, three, three.lower()]  # type: ignore[arg-type]
    assert client_method(None, {"datapoints": {"a": [one]}}) == [one]  # type: ignore[arg-type]
    assert client_method(None, _ActionResult()) == []  # type: ignore[arg-type]
    assert client_method(None, object()) == []  # type: ignore[arg-type]
    held = ValueDataPoint(label="x", value=1)
    assert client_method(None, {"datapoints": {"dp": [held]}}) == [held.datapoint_id]  # type: ignore[arg-type]
