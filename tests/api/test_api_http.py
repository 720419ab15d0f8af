"""The REST API over real HTTP with plain requests: shapes, files, lists, queries, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.server import ApiServer
from app.core.ids import new_ulid
from app.core.models import ValueDataPoint
from app.service import BenchService

USER = "01M858AAAAAAAAAAAAAAAAAAAB"
EXPERIMENT = "01M858AAAAAAAAAAAAAAAAAAAC"


def post_value(http: httpx.Client, document: dict[str, Any]) -> httpx.Response:
    """As MADSci's DataClient sends a value datapoint: urlencoded form field."""
    return http.post("datapoint", data={"datapoint": json.dumps(document)})


def post_file(http: httpx.Client, document: dict[str, Any], content: bytes,
              filename: str = "data.bin", content_type: str | None = None) -> httpx.Response:
    part = (filename, content) if content_type is None else (filename, content, content_type)
    return http.post("datapoint", data={"datapoint": json.dumps(document)},
                     files={"files": part})


def blob_files(service: BenchService) -> list[Path]:
    return [p for p in service.files.blobs_dir.rglob("*") if p.is_file()]


JSON_VALUES = [None, True, False, 0, -7, 2**53, 3.25, -1.5e-300, "", "température 😀",
               [], [1, "a", None, [2.5, {"b": False}]], {}, {"x": 1, "nested": {"y": [1, 2, None]}}]


@pytest.mark.parametrize("value", JSON_VALUES, ids=[repr(v)[:20] for v in JSON_VALUES])
def test_value_of_every_json_kind_round_trips(http: httpx.Client, value: Any) -> None:
    response = post_value(http, {"data_type": "json", "label": "kind", "value": value})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["value"] == value and document["data_type"] == "json"
    datapoint_id = document["_id"]
    assert http.get(f"datapoint/{datapoint_id}").json() == document
    raw = http.get(f"datapoint/{datapoint_id}/value")
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    assert raw.json() == value


def test_document_shape_follows_madsci(http: httpx.Client) -> None:
    datapoint_id = new_ulid()
    sent = {"label": "temp", "ownership_info": {"user_id": USER, "experiment_id": EXPERIMENT},
            "data_type": "json", "datapoint_id": datapoint_id,
            "data_timestamp": "2025-01-02T03:04:05.123456", "value": 23.5, "extra_field": [1]}
    document = post_value(http, sent).json()
    assert list(document)[:5] == ["label", "ownership_info", "data_type", "_id",
                                  "data_timestamp"]
    assert "datapoint_id" not in document
    assert document["_id"] == datapoint_id
    assert document["ownership_info"] == {"user_id": USER, "experiment_id": EXPERIMENT}
    assert document["data_timestamp"] == "2025-01-02T03:04:05.123456"  # naive stays naive
    assert document["extra_field"] == [1]  # MADSci models allow extra fields; kept
    # ``_id`` is accepted on input too (a document read back and sent again).
    again = post_value(http, {**document})
    assert again.status_code == 200 and again.json() == document


def test_json_body_is_accepted_as_a_convenience(http: httpx.Client) -> None:
    response = http.post("datapoint", json={"data_type": "json", "value": {"a": 1}})
    assert response.status_code == 200 and response.json()["value"] == {"a": 1}


@pytest.mark.parametrize("content,filename,expected_type", [
    (b"", "empty.dat", "application/octet-stream"),
    ("line 1\nline 2 é\n".encode(), "run.txt", "text/plain; charset=utf-8"),
    (os.urandom(3 * 1024 * 1024 + 17), "scan.bin", "application/octet-stream"),
], ids=["zero-bytes", "text", "binary-3MiB"])
def test_files_round_trip_byte_exact(http: httpx.Client, service: BenchService,
                                     content: bytes, filename: str, expected_type: str) -> None:
    response = post_file(http, {"data_type": "file", "label": "f", "path": f"/elsewhere/{filename}"},
                         content, filename)
    assert response.status_code == 200, response.text
    document = response.json()
    sha256 = hashlib.sha256(content).hexdigest()
    assert document["sha256"] == sha256 and document["size_bytes"] == len(content)
    assert document["filename"] == filename
    # ``path`` names the captured blob (MADSci's client reads it directly on this machine);
    # the path the client captured from is kept as ``source_path``.
    assert document["source_path"] == f"/elsewhere/{filename}"
    assert Path(document["path"]).read_bytes() == content
    value = http.get(f"datapoint/{document['_id']}/value")
    assert value.status_code == 200 and value.content == content
    assert value.headers["content-type"] == expected_type
    assert value.headers["content-length"] == str(len(content))
    assert value.headers["etag"] == f'"{sha256}"'
    assert service.get(document["_id"]).path == f"/elsewhere/{filename}"


def test_file_values_support_range_requests(http: httpx.Client) -> None:
    content = bytes(range(256)) * 4
    datapoint_id = post_file(http, {"data_type": "file", "path": "r.bin"}, content).json()["_id"]
    url = f"datapoint/{datapoint_id}/value"
    first = http.get(url, headers={"Range": "bytes=0-4"})
    assert first.status_code == 206 and first.content == content[:5]
    assert first.headers["content-range"] == f"bytes 0-4/{len(content)}"
    assert http.get(url, headers={"Range": "bytes=1000-"}).content == content[1000:]
    assert http.get(url, headers={"Range": "bytes=-10"}).content == content[-10:]
    assert http.get(url, headers={"Range": f"bytes={len(content)}-"}).status_code == 416


def test_list_is_keyed_by_id_newest_first(http: httpx.Client) -> None:
    ids = []
    for day in (3, 1, 2):
        ids.append(post_value(http, {"data_type": "json", "value": day,
                                     "data_timestamp": f"2025-01-0{day}T00:00:00Z"}).json()["_id"])
    newest_first = [ids[0], ids[2], ids[1]]
    listing = http.get("datapoints", params={"number": 2}).json()
    assert list(listing) == newest_first[:2]
    assert all(listing[key]["_id"] == key for key in listing)
    assert list(http.get("datapoints").json()) == newest_first  # default 100
    assert list(http.get("datapoints", params={"number": 0}).json()) == newest_first  # all
    assert http.get("datapoints", params={"number": -1}).status_code == 422
    assert http.get("datapoints", params={"number": "many"}).status_code == 422


def test_long_lists_stream_in_order(http: httpx.Client, service: BenchService) -> None:
    points = [ValueDataPoint(value=i, data_timestamp=f"2025-01-01T00:00:{i // 100:02d}.{i % 100:02d}Z")
              for i in range(1500)]
    service.submit_many(points)
    listing = http.get("datapoints", params={"number": 0}).json()
    assert [doc["value"] for doc in listing.values()] == list(range(1499, -1, -1))
    assert len(http.get("datapoints", params={"number": 1200}).json()) == 1200


def test_query_pages_are_at_most_a_thousand_and_always_carry_their_cursor(
        http: httpx.Client, service: BenchService) -> None:
    points = [ValueDataPoint(value=i, data_timestamp=f"2025-01-01T00:00:{i // 100:02d}.{i % 100:02d}Z")
              for i in range(1500)]
    service.submit_many(points)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.post("datapoints/query", params=params, json={})
        assert page.status_code == 200 and len(page.json()) <= 1000
        seen += [doc["value"] for doc in page.json().values()]
        cursor = page.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert seen == list(range(1499, -1, -1))
    too_big = http.post("datapoints/query", params={"limit": 1001}, json={})
    assert too_big.status_code == 422 and "X-Next-Cursor" in too_big.json()["detail"]
    everything = http.post("datapoints/query", json={})  # no limit: all, streamed
    assert len(everything.json()) == 1500 and "x-next-cursor" not in everything.headers


@pytest.fixture
def queried(http: httpx.Client) -> dict[str, str]:
    """Four datapoints to query, by name."""
    made = {}
    specs = {
        "temp_a": {"label": "temp", "value": {"t": 19.5, "unit": "C"}, "ownership_info": {"user_id": USER}},
        "temp_b": {"label": "temp", "value": {"t": 23.5, "unit": "C"}},
        "nested": {"label": "minimal", "value": {"x": 1, "nested": {"y": [1, 2, None]}}},
        "text": {"label": "note", "value": "hello"},
    }
    for second, (name, spec) in enumerate(specs.items()):
        spec = {"data_type": "json", "data_timestamp": f"2025-01-01T00:00:0{second}Z", **spec}
        made[name] = post_value(http, spec).json()["_id"]
    return made


@pytest.mark.parametrize("selector,expected", [
    ({"label": "temp"}, ["temp_b", "temp_a"]),
    ({"value.nested.y": [1, 2, None]}, ["nested"]),
    ({"ownership_info.user_id": USER}, ["temp_a"]),
    ({"label": "temp", "value.t": {"$gt": 20}}, ["temp_b"]),
    ({"value.t": {"$gte": 19.5, "$lt": 30}}, ["temp_b", "temp_a"]),
    ({"label": {"$in": ["note", "minimal"]}}, ["text", "nested"]),
    ({"$or": [{"label": "note"}, {"value.t": {"$lt": 20}}]}, ["text", "temp_a"]),
    ({"value.unit": {"$exists": False}, "label": {"$ne": "note"}}, ["nested"]),
    ({"label": {"$regex": "^te"}}, ["temp_b", "temp_a"]),
    ({"datapoint_id": "01M858AAAAAAAAAAAAAAAAAAAZ"}, []),
    ({}, ["text", "nested", "temp_b", "temp_a"]),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_madsci_style_selectors(http: httpx.Client, queried: dict[str, str],
                                selector: dict[str, Any], expected: list[str]) -> None:
    response = http.post("datapoints/query", json=selector)
    assert response.status_code == 200, response.text
    result = response.json()
    assert list(result) == [queried[name] for name in expected]
    assert all(result[key]["_id"] == key for key in result)


def test_query_by_id(http: httpx.Client, queried: dict[str, str]) -> None:
    result = http.post("datapoints/query", json={"_id": queried["text"]}).json()
    assert list(result) == [queried["text"]]


def test_query_pages_with_a_cursor(http: httpx.Client, queried: dict[str, str]) -> None:
    first = http.post("datapoints/query", params={"limit": 3}, json={})
    assert list(first.json()) == [queried[n] for n in ("text", "nested", "temp_b")]
    cursor = first.headers["x-next-cursor"]
    rest = http.post("datapoints/query", params={"limit": 3, "cursor": cursor}, json={})
    assert list(rest.json()) == [queried["temp_a"]] and "x-next-cursor" not in rest.headers
    by_label = http.post("datapoints/query", params={"sort": "label,data_timestamp"},
                         json={"label": {"$ne": "note"}})
    assert list(by_label.json()) == [queried[n] for n in ("nested", "temp_a", "temp_b")]


@pytest.mark.parametrize("body,needle", [
    (json.dumps({"$where": "this.value > 1"}), "$where"),
    (json.dumps({"value": {"$function": {}}}), "supported operators"),
    (json.dumps({"label": {"$foo": 1}}), "supported operators"),
    (json.dumps([1, 2]), "JSON object"),
    (json.dumps("label"), "JSON object"),
    ("{not json", "not valid JSON"),
    ("", "send a JSON selector"),
    ('{"value": NaN}', "NaN"),
])
def test_bad_selectors_are_400_with_a_reason(http: httpx.Client, body: str, needle: str) -> None:
    response = http.post("datapoints/query", content=body,
                         headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["detail"]


def test_resubmitting_the_same_datapoint_is_safe(http: httpx.Client,
                                                 service: BenchService) -> None:
    document = {"data_type": "json", "datapoint_id": new_ulid(), "label": "retry",
                "data_timestamp": "2026-11-23T22:28:43.010442", "value": {"t": 23.5}}
    first = post_value(http, document)
    second = post_value(http, document)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert service.count() == 1
    clash = post_value(http, {**document, "value": {"t": 99}})
    assert clash.status_code == 409 and "already exists" in clash.json()["detail"]
    assert service.get(document["datapoint_id"]).value == {"t": 23.5}


def test_resubmitting_the_same_file_is_safe(http: httpx.Client, service: BenchService) -> None:
    document = {"data_type": "file", "datapoint_id": new_ulid(), "path": "/cap/run.txt",
                "data_timestamp": "2026-11-23T22:28:43.013803"}
    first = post_file(http, document, b"hello", "run.txt")
    second = post_file(http, document, b"hello", "run.txt")
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    clash = post_file(http, document, b"other bytes", "run.txt")
    assert clash.status_code == 409
    assert service.count() == 1
    assert [p.name for p in blob_files(service)] == [hashlib.sha256(b"hello").hexdigest()]
    assert http.get(f"datapoint/{document['datapoint_id']}/value").content == b"hello"


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = {"content-type": "multipart/form-data; boundary=b0undary"}
VALUE = {"data_type": "json", "value": 1}
FILE = {"data_type": "file", "path": "x.txt"}


@pytest.mark.parametrize("request_kwargs,status,needle", [
    (dict(data={"other": "1"}), 422, "Field required"),
    (dict(content=b"datapoint", headers={"content-type": "text/plain"}), 422, "Field required"),
    (dict(data={"datapoint": "{not json"}), 400, "not valid JSON"),
    (dict(data={"datapoint": "[1, 2]"}), 422, "JSON object"),
    (dict(data={"datapoint": json.dumps({"value": 1})}), 422, "needs a data_type"),
    (dict(data={"datapoint": json.dumps({"data_type": "blob", "value": 1})}), 422,
     "unknown data_type"),
    (dict(data={"datapoint": json.dumps({**VALUE, "datapoint_id": "../../etc/passwd"})}), 422,
     "must be a ULID"),
    (dict(data={"datapoint": json.dumps({**VALUE, "_id": ""})}), 422, "must be a ULID"),
    (dict(data={"datapoint": json.dumps({**VALUE, "ownership_info": {"user_id": "bob"}})}),
     422, "user_id must be a ULID"),
    (dict(data={"datapoint": json.dumps({**VALUE, "data_timestamp": "yesterday"})}), 422,
     "not a timestamp"),
    (dict(data={"datapoint": '{"data_type": "json", "value": NaN}'}), 400, "NaN"),
    (dict(data={"datapoint": json.dumps({"data_type": "json", "value": "x" * (16 << 20)})}),
     413, "at most"),
    (dict(data={"datapoint": json.dumps({"data_type": "json", "value": "x" * (21 << 20)})}),
     413, "bytes"),
    (dict(data={"datapoint": json.dumps({**VALUE, "custom_metadata": {"a": [1]}})}), 422,
     "custom_metadata"),
    (dict(data={"datapoint": json.dumps(FILE)}), 422, "needs its file"),
    (dict(data={"datapoint": json.dumps(VALUE)}, files={"files": ("a.txt", b"a")}), 422,
     "cannot carry an uploaded file"),
    (dict(data={"datapoint": json.dumps(FILE)},
          files=[("files", ("a.txt", b"a")), ("files", ("b.txt", b"b"))]), 422, "one file"),
    (dict(data={"datapoint": json.dumps({**FILE, "size_bytes": 10})},
          files={"files": ("a.txt", b"abc")}), 400, "size_bytes=10"),
    (dict(data={"datapoint": json.dumps({**FILE, "sha256": "0" * 64})},
          files={"files": ("a.txt", b"abc")}), 400, "hash to"),
    (dict(content=_multipart([("datapoint", None, json.dumps(FILE).encode())])[:-30],
          headers=MULTIPART), 400, "multipart"),
    (dict(content=b"--b0undary\r\ngarbage", headers=MULTIPART), 400, "multipart"),
    (dict(content=b"", headers={"content-type": "multipart/form-data"}), 400, "boundary"),
], ids=lambda v: None)
def test_bad_submissions_are_4xx_and_store_nothing(http: httpx.Client, service: BenchService,
                                                   request_kwargs: dict[str, Any], status: int,
                                                   needle: str) -> None:
    response = http.post("datapoint", **request_kwargs)
    assert response.status_code == status, response.text
    assert needle in response.text
    assert service.count() == 0
    assert blob_files(service) == []
    assert http.get("health").status_code == 200  # the connection is still usable


def test_file_part_before_the_datapoint_field_works(http: httpx.Client) -> None:
    body = _multipart([("files", "late.txt", b"first"),
                       ("datapoint", None, json.dumps(FILE).encode()),
                       ("comment", None, b"ignored")])
    response = http.post("datapoint", content=body, headers=MULTIPART)
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "late.txt"
    assert http.get(f"datapoint/{response.json()['_id']}/value").content == b"first"


def test_missing_datapoints_are_404(http: httpx.Client, queried: dict[str, str]) -> None:
    unknown = "01M858AAAAAAAAAAAAAAAAAAZZ"
    response = http.get(f"datapoint/{unknown}")
    assert response.status_code == 404
    assert response.json()["message"] == f"Datapoint with id {unknown} not found."
    value = http.get(f"datapoint/{unknown}/value")
    assert value.status_code == 404 and "not found" in value.json()["message"]
    invalid = http.get("datapoint/not-an-id")
    assert invalid.status_code == 404 and "ULID" in invalid.json()["hint"]
    assert http.get(f"datapoint/{queried['text'].lower()}").status_code == 200


def test_client_names_and_paths_never_choose_files(http: httpx.Client, service: BenchService,
                                                   tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve", encoding="utf-8")
    before = {p for p in tmp_path.rglob("*")}
    hostile = {"data_type": "file", "path": str(secret), "filename": "../../../escape.txt"}
    body = _multipart([("datapoint", None, json.dumps(hostile).encode()),
                       ("files", "../..\\..\\../escape\x01\x7f.txt", b"uploaded")])
    response = http.post("datapoint", content=body, headers=MULTIPART)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["filename"] == "escape.txt"  # last segment, control characters gone
    assert Path(document["path"]).parent.parent.parent == service.files.blobs_dir
    assert http.get(f"datapoint/{document['_id']}/value").content == b"uploaded"
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(service.paths.data_dir in p.parents for p in created)
    assert secret.read_text(encoding="utf-8") == "do not serve"

    # A datapoint that only *names* a server file is never read from it.
    object_storage = {"data_type": "object_storage", "path": str(secret),
                      "storage_endpoint": "localhost:9000", "bucket_name": "b",
                      "object_name": "../../secret.txt"}
    stored = post_value(http, object_storage)
    assert stored.status_code == 200
    value = http.get(f"datapoint/{stored.json()['_id']}/value")
    assert value.status_code == 404 and b"do not serve" not in value.content
    assert post_value(http, {"data_type": "file", "path": str(secret)}).status_code == 422
    for bad_id in ("..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e"):
        assert http.get(f"datapoint/{bad_id}/value").status_code == 404


def test_health_settings_and_docs(http: httpx.Client, server: ApiServer,
                                  queried: dict[str, str]) -> None:
    health = http.get("health").json()
    assert health["healthy"] is True and health["total_datapoints"] == 4
    assert {"db_connected", "storage_accessible", "version", "description"} <= set(health)
    settings = http.get("settings").json()["settings"]
    assert settings["manager_type"] == "data_manager"
    assert settings["server_url"] == server.url and settings["token_required"] is False
    assert "token" not in json.dumps(settings).replace("token_required", "")
    assert http.get("settings", params={"include_defaults": False}).json()["settings"] == {
        "server_url": server.url}
    with_schema = http.get("settings", params={"include_schema": True}).json()
    assert with_schema["schema_title"] == "ApiSettings" and "properties" in with_schema["schema"]
    docs = http.get("docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = http.get("openapi.json").json()["paths"]
    assert {"/datapoint", "/datapoint/{datapoint_id}", "/datapoint/{datapoint_id}/value",
            "/datapoints", "/datapoints/query", "/health", "/settings"} <= set(paths)
    form = paths["/datapoint"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(form["schema"]["properties"]) == {"datapoint", "files"}
