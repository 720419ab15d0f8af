"""CORS for MADSci's dashboard (issue #11 item 6), over real HTTP: allowed origins get
``Access-Control-Allow-Origin`` and preflights; other origins are refused as before; the
token rule is unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.component import allowed_origins
from app.api.server import ApiConfigError, ApiServer
from app.core.config import save_section
from app.service import BenchService

DASHBOARD = "http://dashboard.lab:3000"
TOKEN = "t0ken-for-cors-tests"


@pytest.fixture
def cors_server(service: BenchService) -> Iterator[str]:
    with ApiServer(service, port=0, allowed_origins=(DASHBOARD + "/",)) as api:
        yield api.url


@pytest.fixture
def cors_token_server(service: BenchService) -> Iterator[str]:
    with ApiServer(service, port=0, token=TOKEN, allowed_origins=(DASHBOARD,)) as api:
        yield api.url


def test_an_allowed_origin_reads_with_cors_headers(cors_server: str,
                                                   service: BenchService) -> None:
    dp = service.capture_value({"t": 1}, label="temp")
    answer = httpx.get(f"{cors_server}datapoint/{dp.datapoint_id}",
                       headers={"Origin": DASHBOARD})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == DASHBOARD
    assert "Origin" in answer.headers["vary"]
    posted = httpx.post(f"{cors_server}datapoint", headers={"Origin": DASHBOARD},
                        data={"datapoint": json.dumps({"data_type": "json", "value": 2})})
    assert posted.status_code == 200
    assert posted.headers["access-control-allow-origin"] == DASHBOARD
    paged = httpx.post(f"{cors_server}datapoints/query?limit=1", json={},
                       headers={"Origin": DASHBOARD})
    assert "X-Next-Cursor" in paged.headers["access-control-expose-headers"]


def test_preflight_from_an_allowed_origin_is_answered(cors_server: str) -> None:
    answer = httpx.options(f"{cors_server}datapoints/query", headers={
        "Origin": DASHBOARD, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization, x-evil"})
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == DASHBOARD
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == "content-type, authorization"


def test_other_origins_are_refused_as_before(cors_server: str) -> None:
    for method in ("GET", "OPTIONS"):
        answer = httpx.request(method, f"{cors_server}health", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
        assert answer.status_code == 403
        assert "access-control-allow-origin" not in answer.headers
        assert "BENCHDATA_API_ALLOWED_ORIGINS" in answer.json()["detail"]
    assert httpx.get(f"{cors_server}health").headers.get("access-control-allow-origin") is None


def test_the_token_rule_is_unchanged_for_allowed_origins(cors_token_server: str) -> None:
    preflight = httpx.options(f"{cors_token_server}health", headers={
        "Origin": DASHBOARD, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204  # browsers send no credentials on a preflight
    refused = httpx.get(f"{cors_token_server}health", headers={"Origin": DASHBOARD})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == DASHBOARD  # readable reason
    allowed = httpx.get(f"{cors_token_server}health",
                        headers={"Origin": DASHBOARD, "Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == DASHBOARD
    evil = httpx.get(f"{cors_token_server}health", headers={
        "Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"})
    assert evil.status_code == 403


def test_allowed_origins_come_from_the_environment_or_the_settings(
        service: BenchService, tmp_path: Path) -> None:
    paths = service.paths
    assert allowed_origins(paths, environ={}) == ()
    save_section(paths, "api", {"allowed_origins": ["HTTP://Dashboard.Lab:3000/"]})
    assert allowed_origins(paths, environ={}) == (DASHBOARD,)
    assert allowed_origins(paths, environ={
        "BENCHDATA_API_ALLOWED_ORIGINS": "http://a.lab, https://b.lab:8443"}) == (
        "http://a.lab", "https://b.lab:8443")
    for bad in ("*", "dashboard.lab", "http://dash.lab/path"):
        with pytest.raises(ApiConfigError, match="not an origin"):
            allowed_origins(paths, environ={"BENCHDATA_API_ALLOWED_ORIGINS": bad})
    save_section(paths, "api", {"allowed_origins": "http://a.lab"})
    with pytest.raises(ApiConfigError, match="must be a list"):
        allowed_origins(paths, environ={})
