"""Wire correctness: file names as sent, hostile text and numbers answered with a 4xx on
every route and both POST paths, what the OpenAPI document declares, and answers that
add nothing the client did not send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.app import MAX_DATAPOINT_BYTES, MAX_SELECTOR_BYTES
from app.api.multipart import parse_disposition
from app.api.server import ApiServer
from app.service import BenchService
from tests.api.test_api_fast_ingest import (  # noqa: F401  (fixtures)
    URLENCODED,
    framework_server,
    pair,
)
from tests.api.test_api_madsci_client import run_report

FILE = json.dumps({"data_type": "file", "label": "named", "path": "ignored.csv"})
NAMES = ["測定–run1.csv", "µg°C.csv", "naïve résumé.txt", "emoji 😀.bin", 'quote"d.txt',
         "100%25 done.csv", "plain.txt"]


def _raw_upload(disposition: bytes) -> bytes:
    return (b"--b0undary\r\nContent-Disposition: form-data; name=\"datapoint\"\r\n\r\n"
            + FILE.encode() + b"\r\n--b0undary\r\nContent-Disposition: " + disposition
            + b"\r\nContent-Type: text/csv\r\n\r\nbytes\r\n--b0undary--\r\n")


RAW_DISPOSITIONS: dict[str, tuple[bytes, str]] = {
    # RFC 7578 / WHATWG: raw UTF-8 in the quotes (browsers, requests, httpx)
    "raw utf-8": ('form-data; name="files"; filename="測定–run1.csv"'.encode(),
                  "測定–run1.csv"),
    "raw utf-8 latin letters": ('form-data; name="files"; filename="µg°C.csv"'.encode(),
                                "µg°C.csv"),
    "html5 escaped quote": (b'form-data; name="files"; filename="a%22b.csv"', 'a"b.csv'),
    "backslash-escaped quote": (b'form-data; name="files"; filename="a\\"b.csv"', 'a"b.csv'),
    # RFC 5987 / 2231 extended parameters win over the plain one beside them
    "rfc 5987": (b"form-data; name=\"files\"; filename=\"fallback.csv\"; "
                 b"filename*=UTF-8''%E6%B8%AC%E5%AE%9A%E2%80%93run1.csv", "測定–run1.csv"),
    "rfc 5987 alone, lower case": (b"form-data; name=files; filename*=utf-8''%C2%B5g%C2%B0C.csv",
                                   "µg°C.csv"),
    "rfc 5987 latin-1": (b"form-data; name=files; filename*=ISO-8859-1'de'%B5g%B0C.csv",
                         "µg°C.csv"),
    # the whole name percent-encoded in the quotes
    "percent-encoded utf-8": (b'form-data; name="files"; filename="%E6%B8%AC%E5%AE%9A.csv"',
                              "測定.csv"),
    "ascii percent sign kept": (b'form-data; name="files"; filename="100%25.csv"', "100%25.csv"),
    # an old client that sent Latin-1 bytes
    "latin-1 bytes": ('form-data; name="files"; filename="µg°C.csv"'.encode("latin-1"),
                      "µg°C.csv"),
}


@pytest.mark.parametrize("disposition,expected", RAW_DISPOSITIONS.values(),
                         ids=RAW_DISPOSITIONS.keys())
def test_file_names_are_stored_as_sent(http: httpx.Client, service: BenchService,
                                       disposition: bytes, expected: str) -> None:
    response = http.post("datapoint", content=_raw_upload(disposition), headers={
        "content-type": "multipart/form-data; boundary=b0undary"})
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == expected
    assert service.get(response.json()["_id"]).filename == expected


@pytest.mark.parametrize("name", NAMES)
def test_file_names_from_httpx_and_urllib3_are_stored_as_sent(
        http: httpx.Client, service: BenchService, name: str) -> None:
    by_httpx = http.post("datapoint", data={"datapoint": FILE},
                         files={"files": (name, b"bytes", "text/csv")})
    body, content_type = urllib3.encode_multipart_formdata(
        [("datapoint", FILE), ("files", (name, b"bytes", "text/csv"))])
    by_urllib3 = http.post("datapoint", content=body, headers={"content-type": content_type})
    for response in (by_httpx, by_urllib3):
        assert response.status_code == 200, response.text
        assert service.get(response.json()["_id"]).filename == name


def test_disposition_parsing_never_raises_on_junk() -> None:
    for raw in (b"", b"form-data", b"form-data; ;;; =x", b'form-data; name="a\\',
                b"form-data; filename*=bad", b"form-data; filename*=nocharset''%FF",
                b"form-data; filename*=UTF-8''%ZZ", b"\xff\xfe; name=\xff"):
        assert isinstance(parse_disposition(raw), dict)
    assert parse_disposition(b"form-data; filename*=UTF-8''%FF%FE") == {}


MADSCI_NAMES_SCRIPT = r"""
names = json.loads(os.environ["NAMES"])
report["stored"] = {}
for name in names:
    source = work / name
    source.write_bytes(name.encode("utf-8"))
    dp = client.submit_datapoint(FileDataPoint(label="named", path=str(source)))
    fetched = client.get_datapoint(dp.datapoint_id)
    report["stored"][name] = [dp.datapoint_id, fetched.filename if hasattr(fetched, "filename")
                              else fetched.model_extra.get("filename")]
"""


def test_madsci_client_uploads_non_ascii_file_names(madsci_python: Path, server: ApiServer,
                                                    service: BenchService, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    names = [name for name in NAMES if '"' not in name]  # a file system name, not a header
    monkeypatch.setenv("NAMES", json.dumps(names))
    report = run_report(madsci_python, MADSCI_NAMES_SCRIPT, server.url, tmp_path)
    for name in names:
        datapoint_id, answered = report["stored"][name]
        assert answered == name
        assert service.get(datapoint_id).filename == name


# -- hostile text and numbers: a 4xx with a message, on both POST paths --------------------

LONE_SURROGATE = '"\\ud800"'
HUGE_INTEGER = "9" * 5000
BAD_DATAPOINTS: dict[str, str] = {
    "lone surrogate value": '{"data_type": "json", "value": ' + LONE_SURROGATE + "}",
    "lone low surrogate in the label": '{"data_type": "json", "label": "\\uDFFF", "value": 1}',
    "lone surrogate key": '{"data_type": "json", "value": {' + LONE_SURROGATE + ": 1}}",
    "lone surrogate metadata": '{"data_type": "json", "value": 1, "custom_metadata": '
                               '{"a": ' + LONE_SURROGATE + "}}",
    "lone surrogate extra field": '{"data_type": "json", "value": 1, "x": [' + LONE_SURROGATE
                                  + "]}",
    "5,000-digit integer": '{"data_type": "json", "value": ' + HUGE_INTEGER + "}",
    "5,000-digit integer in an extra field": '{"data_type": "json", "value": 1, "n": -'
                                            + HUGE_INTEGER + "}",
}


def _post_both_ways(client: httpx.Client, text: str) -> list[httpx.Response]:
    return [client.post("datapoint", content=urlencode({"datapoint": text}).encode(),
                        headers=URLENCODED),
            client.post("datapoint", content=text.encode(),
                        headers={"content-type": "application/json"}),
            client.post("datapoint", data={"datapoint": text}, files={"other": b""})]


@pytest.mark.parametrize("text", BAD_DATAPOINTS.values(), ids=BAD_DATAPOINTS.keys())
def test_bad_text_and_numbers_are_a_4xx_on_both_paths(
        pair: tuple[httpx.Client, httpx.Client, BenchService, BenchService],
        text: str) -> None:
    fast, framework, fast_bench, framework_bench = pair
    fast_answers = _post_both_ways(fast, text)
    framework_answers = _post_both_ways(framework, text)
    for response in fast_answers + framework_answers:
        assert response.status_code == 400, response.text
        assert "surrogate" in response.json()["detail"] or "digits" in response.json()["detail"]
    assert [r.json() for r in fast_answers] == [r.json() for r in framework_answers]
    assert fast_bench.count() == framework_bench.count() == 0


BAD_SELECTORS: dict[str, str] = {
    "NUL in a key": '{"a\\u0000b": 1}',
    "NUL in a nested path": '{"value.t\\u0000": {"$gt": 1}}',
    "lone surrogate value": '{"label": ' + LONE_SURROGATE + "}",
    "lone surrogate key": "{" + LONE_SURROGATE + ": 1}",
    "5,000-digit integer": '{"value": {"$gt": ' + HUGE_INTEGER + "}}",
    "integer beyond a double": '{"value.a": {"$lt": -1' + "0" * 400 + "}}",
}
#: Selectors that are fine, with numbers that once made the query language fail.
HUGE_BUT_FINE_SELECTORS: dict[str, str] = {
    "$exists with an integer beyond a double": '{"value": {"$exists": -1' + "0" * 400 + "}}",
}


@pytest.mark.parametrize("text", BAD_SELECTORS.values(), ids=BAD_SELECTORS.keys())
def test_bad_selectors_are_a_400(http: httpx.Client, text: str) -> None:
    for params in ({}, {"limit": 5}):
        response = http.post("datapoints/query", content=text.encode(), params=params)
        assert response.status_code == 400, response.text
        assert response.json()["detail"]


@pytest.mark.parametrize("text", HUGE_BUT_FINE_SELECTORS.values(),
                         ids=HUGE_BUT_FINE_SELECTORS.keys())
def test_huge_numbers_in_selectors_are_read(http: httpx.Client, text: str) -> None:
    response = http.post("datapoints/query", content=text.encode())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("params", [{"sort": "\x00"}, {"sort": "value.a\x00"},
                                    {"cursor": "\x00"}, {"limit": HUGE_INTEGER}])
def test_bad_query_parameters_are_a_4xx(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.post("datapoints/query", content=b"{}", params=params)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("path", ["datapoint/%00", "datapoint/%ED%A0%80/value",
                                  "datapoint/" + "9" * 5000, "datapoints?number=" + HUGE_INTEGER])
def test_bad_path_and_query_text_is_a_4xx(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert 400 <= response.status_code < 500, response.text


def test_paging_by_values_beyond_64_bits_visits_each_once(http: httpx.Client) -> None:
    values = [2**70, -(10**400), 5, 10**400, -(2**64), 1.5]
    ids = {http.post("datapoint", data={"datapoint": json.dumps(
        {"data_type": "json", "value": value})}).json()["_id"] for value in values}
    for sort in ("value", "-value"):
        seen: list[str] = []
        cursor = None
        for _page in range(len(values) + 2):
            params = {"limit": 1, "sort": sort, **({"cursor": cursor} if cursor else {})}
            response = http.post("datapoints/query", content=b"{}", params=params)
            assert response.status_code == 200, response.text
            seen += list(response.json())
            cursor = response.headers.get("x-next-cursor")
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)


def test_python_api_refuses_a_lone_surrogate_value(service: BenchService) -> None:
    from app.core.errors import ValueNotJSONError
    from app.core.models import ValueDataPoint

    with pytest.raises(ValueNotJSONError, match="surrogate"):
        service.submit(ValueDataPoint(label="x", value={"k": "\ud800"}))
    assert service.count() == 0


# -- a bounded fuzz: whatever arrives, never a 5xx -------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ue000", "$", "."]),
                max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12)
_DOCUMENT = st.fixed_dictionaries(
    {"data_type": st.sampled_from(["json", "file", "object_storage", "data_value", "x"])},
    optional={"label": _JSON, "value": _JSON, "custom_metadata": _JSON, "ownership_info": _JSON,
              "data_timestamp": _JSON, "_id": _JSON, "datapoint_id": _JSON, "extra": _JSON})


def _surrogate_escapes(text: str) -> str:
    # U+E000 in generated text becomes a lone surrogate escape in the JSON we send.
    return text.replace("\\ue000", "\\ud800")


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_DOCUMENT, selector=st.dictionaries(_TEXT, _JSON, max_size=3))
def test_fuzzed_documents_and_selectors_never_answer_5xx(
        pair: tuple[httpx.Client, httpx.Client, BenchService, BenchService],
        document: dict[str, Any], selector: dict[str, Any]) -> None:
    fast, framework, _, _ = pair
    text = _surrogate_escapes(json.dumps(document))
    answers = [_post_both_ways(client, text) for client in (fast, framework)]
    for response in answers[0] + answers[1]:
        assert response.status_code < 500, (text, response.text)
    assert [r.status_code for r in answers[0]] == [r.status_code for r in answers[1]]
    query = fast.post("datapoints/query", content=_surrogate_escapes(json.dumps(selector)))
    assert query.status_code < 500, (selector, query.text)


# -- answers add nothing ---------------------------------------------------------------------


def test_answers_add_no_custom_metadata_that_was_not_sent(http: httpx.Client) -> None:
    sent = {"data_type": "json", "label": "plain", "value": 5}
    answered = http.post("datapoint", data={"datapoint": json.dumps(sent)}).json()
    assert "custom_metadata" not in answered
    fetched = http.get(f"datapoint/{answered['_id']}").json()
    assert "custom_metadata" not in fetched
    assert "custom_metadata" not in http.get("datapoints").json()[answered["_id"]]
    filed = http.post("datapoint", data={"datapoint": FILE},
                      files={"files": ("a.txt", b"a")}).json()
    assert "custom_metadata" not in filed
    with_metadata = http.post("datapoint", data={"datapoint": json.dumps(
        {**sent, "custom_metadata": {"k": "v"}})}).json()
    assert with_metadata["custom_metadata"] == {"k": "v"}


# -- the OpenAPI document ------------------------------------------------------------------


def test_openapi_declares_error_answers_and_limits(http: httpx.Client) -> None:
    paths = http.get("openapi.json").json()["paths"]
    expected = {
        ("/datapoint", "post"): {"200", "400", "409", "413", "422", "507"},
        ("/datapoint/{datapoint_id}", "get"): {"200", "404"},
        ("/datapoint/{datapoint_id}/value", "get"): {"200", "404"},
        ("/datapoints", "get"): {"200", "422"},
        ("/datapoints/query", "post"): {"200", "400", "413", "422"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method, sorted(responses))
        for status in statuses - {"200"}:
            assert responses[status]["description"]
    post = paths["/datapoint"]["post"]
    assert str(MAX_DATAPOINT_BYTES) in json.dumps(post)
    assert str(MAX_SELECTOR_BYTES) in json.dumps(paths["/datapoints/query"]["post"])
