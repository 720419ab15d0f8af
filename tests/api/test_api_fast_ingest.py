"""The raw-ASGI fast path for ``POST /datapoint`` answers exactly as the framework route.

Two real servers side by side — one with the fast path (the default), one without it —
get the same requests; status, content type and JSON body must match, and so must what
each stored. Plus the pieces the fast path is built from, on their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.app import create_app, datapoint_field, value_document
from app.api.coalesce import HOLD_LIMIT, CoalescingTransport
from app.api.group_commit import GroupCommitter
from app.api.ingest import FAST_BODY_LIMIT, fast_kind
from app.api.server import ApiServer
from app.core.errors import ConflictError
from app.core.ids import new_ulid
from app.core.models import DataPoint, ValueDataPoint
from app.service import BenchService

USER = "01M858AAAAAAAAAAAAAAAAAAAB"
FIXED = {"datapoint_id": "01M858D6C2M7MG2663QFRBGKNX",
         "data_timestamp": "2026-11-23T22:28:43.010442"}
URLENCODED = {"content-type": "application/x-www-form-urlencoded"}
JSON_BODY = {"content-type": "application/json"}


@pytest.fixture
def framework_server(tmp_path: Path) -> Iterator[tuple[ApiServer, BenchService]]:
    """A second server whose POST /datapoint always takes the framework route."""
    with BenchService(tmp_path / "framework") as bench:
        app = create_app(bench, loopback_only=True, fast_ingest=False)
        with ApiServer(app=app, port=0) as api:
            yield api, bench


@pytest.fixture
def pair(http: httpx.Client, service: BenchService,
         framework_server: tuple[ApiServer, BenchService]
         ) -> Iterator[tuple[httpx.Client, httpx.Client, BenchService, BenchService]]:
    api, bench = framework_server
    with httpx.Client(base_url=api.url, timeout=30) as framework:
        yield http, framework, service, bench


def form(document: Any) -> dict[str, Any]:
    text = document if isinstance(document, str) else json.dumps(document)
    return {"content": urlencode({"datapoint": text}).encode(), "headers": URLENCODED}


def value(**fields: Any) -> dict[str, Any]:
    return {"data_type": "json", **FIXED, "value": {"t": 23.5}, **fields}


SAME_ANSWER_CASES: dict[str, dict[str, Any]] = {
    # accepted
    "minimal": form(value()),
    "madsci shape": form({"label": "temp", "ownership_info": {"user_id": USER},
                          **value(), "extra_field": [1, {"a": None}]}),
    "text and metadata": form(value(label="täglich 😀", custom_metadata={"n": 3, "b": True})),
    "legacy data_value": form(value(data_type="data_value")),
    "every kind of value": form(value(value=[None, True, 0, -7, 2**70, 3.25, "", {"x": []}])),
    "json body": {"content": json.dumps(value()).encode(), "headers": JSON_BODY},
    "other fields beside": {"content": b"a=1&" + form(value())["content"] + b"&b=2",
                            "headers": URLENCODED},
    "raw utf-8 in the form": {"content": b"datapoint=" + json.dumps(
        value(label="é"), ensure_ascii=False).encode(), "headers": URLENCODED},
    "charset in content type": {"content": form(value())["content"], "headers": {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8"}},
    # refused
    "malformed json": form("{not json"),
    "not an object": form("[1, 2]"),
    "no data_type": form({"value": 1}),
    "unknown data_type": form(value(data_type="blob")),
    "path-like id": form(value(datapoint_id="../../etc/passwd")),
    "empty _id": form({"data_type": "json", "_id": ""}),
    "non-ulid owner": form(value(ownership_info={"user_id": "bob"})),
    "bad timestamp": form(value(data_timestamp="yesterday")),
    "NaN": form('{"data_type": "json", "value": NaN}'),
    "infinite value": form('{"data_type": "json", "value": 1e400}'),
    "infinite extra field": form('{"data_type": "json", "value": 1, "x": [1e400]}'),
    "non-text metadata": form(value(custom_metadata={"a": [1]})),
    "label not text": form(value(label=5)),
    "file without its file": form({"data_type": "file", "path": "x.txt"}),
    "nested too deeply": form('{"data_type": "json", "value": ' + "[" * 5000 + "]" * 5000 + "}"),
    "byte order mark": form("\ufeff" + json.dumps(value())),
    "no datapoint field": {"content": b"other=1", "headers": URLENCODED},
    "empty form": {"content": b"", "headers": URLENCODED},
    "escapes that are not utf-8": {"content": b"datapoint=%C3%28", "headers": URLENCODED},
    "broken escapes": {"content": b"datapoint=%zz%4", "headers": URLENCODED},
    "json body not json": {"content": b"{not json", "headers": JSON_BODY},
    "json body not utf-8": {"content": b'{"data_type": "json", "label": "\xff"}',
                            "headers": JSON_BODY},
    # not for the fast path: the framework route answers on both servers
    "over the fast size": form(value(value="x" * (FAST_BODY_LIMIT + 10))),
    "chunked": {"chunks": [b"datapoint=", quote(json.dumps(value())).encode()],
                "headers": URLENCODED},
    "no content type": {"content": b"datapoint=1"},
    "plain text": {"content": b"datapoint", "headers": {"content-type": "text/plain"}},
}


def answer(response: httpx.Response) -> tuple[int, str, Any]:
    kind = response.headers.get("content-type", "")
    body = response.json() if kind == "application/json" else response.text
    return response.status_code, kind, body


def stored(service: BenchService) -> list[dict[str, Any]]:
    return [dp.to_document() for dp in service.iter_query(None)]


@pytest.mark.parametrize("request_kwargs", SAME_ANSWER_CASES.values(),
                         ids=SAME_ANSWER_CASES.keys())
def test_fast_path_answers_as_the_framework_route(
        pair: tuple[httpx.Client, httpx.Client, BenchService, BenchService],
        request_kwargs: dict[str, Any]) -> None:
    fast, framework, fast_store, framework_store = pair

    def send(client: httpx.Client) -> httpx.Response:
        kwargs = dict(request_kwargs)
        if "chunks" in kwargs:  # an iterator body is sent chunked, without a length
            kwargs["content"] = iter(kwargs.pop("chunks"))
        return client.post("datapoint", **kwargs)

    ours, theirs = send(fast), send(framework)
    assert answer(ours) == answer(theirs)
    assert ours.status_code != 500, ours.text
    assert stored(fast_store) == stored(framework_store)
    assert fast.get("health").status_code == 200  # the connection is still usable


def test_resubmission_and_conflict_answer_alike(
        pair: tuple[httpx.Client, httpx.Client, BenchService, BenchService]) -> None:
    fast, framework, fast_store, _ = pair
    document = value(datapoint_id=new_ulid(), label="retry")
    for client in (fast, framework):
        first = client.post("datapoint", **form(document))
        again = client.post("datapoint", **form(document))
        clash = client.post("datapoint", **form({**document, "value": "other"}))
        assert (first.status_code, again.status_code, clash.status_code) == (200, 200, 409)
        assert first.json() == again.json()
        assert "already exists with different value" in clash.json()["detail"]
    assert fast_store.count() == 1


@pytest.mark.allow_error_logs  # injects a bug on purpose: its trace goes to the log
def test_an_unexpected_failure_is_a_plain_500_on_both_paths(
        pair: tuple[httpx.Client, httpx.Client, BenchService, BenchService],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast, framework, fast_store, framework_store = pair

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug, not bad input")

    for bench in (fast_store, framework_store):
        monkeypatch.setattr(bench, "submit_many", broken)
    ours = fast.post("datapoint", **form(value()))
    theirs = framework.post("datapoint", **form(value()))
    assert answer(ours) == answer(theirs)
    assert ours.status_code == 500 and ours.text == "Internal Server Error"
    monkeypatch.undo()
    assert fast.post("datapoint", **form(value())).status_code == 200  # still serving


def test_concurrent_posts_are_each_answered_with_their_own_outcome(
        http: httpx.Client, server: ApiServer, service: BenchService) -> None:
    taken = new_ulid()
    assert http.post("datapoint", **form(value(datapoint_id=taken))).status_code == 200
    outcomes: dict[int, int] = {}

    def post(i: int) -> None:
        datapoint_id = taken if i % 5 == 0 else new_ulid()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("datapoint", **form(value(datapoint_id=datapoint_id,
                                                              value=i)))
        outcomes[i] = response.status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == {i: 409 if i % 5 == 0 else 200 for i in range(20)}
    assert service.count() == 1 + 16


def test_the_guard_covers_the_fast_path(service: BenchService) -> None:
    with ApiServer(service, port=0, token="s3cret-t0ken") as api:
        with httpx.Client(base_url=api.url) as client:
            refused = client.post("datapoint", **form(value()))
            assert refused.status_code == 401 and "token" in refused.json()["detail"]
            accepted = client.post("datapoint", **form(value()),
                                   auth=("bench", "s3cret-t0ken"))
            assert accepted.status_code == 200
            from_a_page = client.post("datapoint", content=form(value())["content"],
                                      headers={**URLENCODED, "Origin": "https://evil.example",
                                               "Authorization": "Bearer s3cret-t0ken"})
            assert from_a_page.status_code == 403
    assert service.count() == 1


# -- the pieces ------------------------------------------------------------------------


@pytest.mark.parametrize("headers,expected", [
    ([(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"10")],
     "application/x-www-form-urlencoded"),
    ([(b"content-type", b"Application/JSON; charset=utf-8"), (b"content-length", b"10")],
     "application/json"),
    ([(b"content-type", b"application/json"), (b"content-length", b"%d" % FAST_BODY_LIMIT)],
     "application/json"),
    ([(b"content-type", b"application/json"),
      (b"content-length", b"%d" % (FAST_BODY_LIMIT + 1))], None),
    ([(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")], None),
    ([(b"content-type", b"application/json")], None),
    ([(b"content-type", b"application/json"), (b"content-length", b"x")], None),
    ([(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", b"10")],
     None),
    ([(b"content-length", b"10")], None),
])
def test_which_requests_take_the_fast_path(headers: list[tuple[bytes, bytes]],
                                           expected: str | None) -> None:
    assert fast_kind(headers) == expected


def _parse_qsl_field(body: bytes) -> str | None:
    """What the general parser alone makes of a form."""
    try:
        fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                           errors="strict")
    except UnicodeDecodeError:
        return "<not utf-8>"
    values = [value for name, value in fields if name == "datapoint"]
    return values[-1] if values else None


def _datapoint_field_or_marker(body: bytes) -> str | None:
    try:
        return datapoint_field(body)
    except Exception as exc:  # the ApiError the general parser raises for bad UTF-8
        assert "not UTF-8" in str(exc)
        return "<not utf-8>"


@given(st.text())
def test_the_sole_field_decoder_reads_what_urlencode_wrote(text: str) -> None:
    body = urlencode({"datapoint": text}).encode()
    assert datapoint_field(body) == text


@given(st.binary(max_size=64).map(lambda raw: b"datapoint=" + raw))
def test_the_sole_field_decoder_agrees_with_parse_qsl_on_any_bytes(body: bytes) -> None:
    assert _datapoint_field_or_marker(body) == _parse_qsl_field(body)


@given(st.lists(st.sampled_from(["%", "%4", "%41", "%c3%a9", "%C3", "+", "\\", "\\x41",
                                 "a", "=", "&", "é", "%zz", "%%"]), max_size=12))
def test_the_sole_field_decoder_agrees_on_tricky_escapes(pieces: list[str]) -> None:
    body = ("datapoint=" + "".join(pieces)).encode()
    assert _datapoint_field_or_marker(body) == _parse_qsl_field(body)


VALUE_DOCUMENTS = [
    {"data_type": "json"},
    {"data_type": "json", "ownership_info": None, "label": None},
    {"data_type": "json", "label": "t", "value": {"x": [1, 2.5, None, "é"]},
     "ownership_info": {"user_id": USER, "manager_id": USER.lower()},
     "custom_metadata": {"a": 1, "b": "text"}, "extra": {"nested": [True]}, "zz": None,
     "data_timestamp": "2025-01-02T03:04:05+02:00"},
    {"data_type": "data_value", "_id": new_ulid(), "value": 2**70},
    {"data_type": "json", "datapoint_id": new_ulid().lower(), "value": "s",
     "data_timestamp": "2025-01-02T03:04:05"},
]


@pytest.mark.parametrize("document", VALUE_DOCUMENTS)
def test_value_documents_are_what_pydantic_dumps(document: dict[str, Any],
                                                 service: BenchService) -> None:
    datapoint = DataPoint.discriminate(document)
    assert isinstance(datapoint, ValueDataPoint)
    expected = datapoint.to_document()
    assert list(value_document(datapoint).items()) == list(expected.items())
    stored_back = service.get(service.submit(datapoint).datapoint_id)
    assert isinstance(stored_back, ValueDataPoint)
    assert list(value_document(stored_back).items()) == list(
        stored_back.to_document().items())


class _FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_coalescing_joins_one_steps_writes_in_order() -> None:
    async def scenario() -> _FakeTransport:
        fake = _FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert fake.writes == [] and transport.get_write_buffer_size() == 23
        await asyncio.sleep(0)  # the end of the step: one write
        assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.write(b"head")
        big = b"x" * HOLD_LIMIT
        transport.write(big)  # too much to hold: everything goes, in order
        assert fake.writes[1:] == [b"head" + big]
        transport.write(big)  # a large write with nothing held goes straight out
        assert fake.writes[2:] == [big]
        transport.write(b"last")
        transport.close()  # what is held is written before the close
        assert fake.writes[3:] == [b"last"] and fake.closed
        assert transport.get_extra_info("socket") == "info:socket"
        await asyncio.sleep(0)  # the scheduled flush finds nothing more to write
        assert len(fake.writes) == 4
        return fake

    asyncio.run(scenario())


def test_group_commit_batches_async_submissions_and_answers_each(
        service: BenchService, batch_sizes: list[int]) -> None:
    committer = GroupCommitter(service)
    taken = new_ulid()
    service.submit(ValueDataPoint(datapoint_id=taken, value="first"))
    batch_sizes.clear()  # count the committer's batches only

    async def scenario() -> list[Any]:
        hold = threading.Event()
        holding = threading.Event()

        def block_the_store() -> None:
            with service.store.transaction():
                holding.set()
                hold.wait(60)

        blocker = threading.Thread(target=block_the_store)
        blocker.start()
        holding.wait(10)

        def submit(i: int) -> asyncio.Future[Any]:
            return asyncio.ensure_future(committer.submit_async(ValueDataPoint(
                datapoint_id=taken if i == 3 else new_ulid(), value=i)))

        try:
            tasks = [submit(0)]
            await wait_for(lambda: len(batch_sizes) == 1)  # taken; its commit waits
            tasks += [submit(i) for i in range(1, 12)]
            await wait_for(lambda: committer.pending() == 11)  # the others queue meanwhile
        finally:
            hold.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        blocker.join(30)
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        committer.close()  # before the store closes: no commit may outlive the test
    assert batch_sizes[0] == 1 and max(batch_sizes) >= 2, batch_sizes
    assert isinstance(results.pop(3), ConflictError)
    assert [dp.value for dp in results] == [i for i in range(12) if i != 3]
    assert service.count() == 12


async def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def test_the_committer_thread_stops_and_starts_again(service: BenchService) -> None:
    committer = GroupCommitter(service, idle_exit_s=30)
    committer.submit(ValueDataPoint(value=1))
    assert committer.running
    committer.close()
    assert not committer.running
    assert committer.submit(ValueDataPoint(value=2)).value == 2
    committer.close()
    assert service.count() == 2
