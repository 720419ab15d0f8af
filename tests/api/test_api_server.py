"""The API server as a service: concurrency, streaming memory, disconnects, access, startup."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.waiting import wait_until

from app.api.component import make_component
from app.api.server import ApiConfigError, ApiServer, check_bind
from app.core import capture_notes
from app.core.ids import new_ulid
from app.runner import HeadlessRunner, RunOptions
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = "streamb0undary"


def multipart_stream(document: dict, chunks: Iterator[bytes], filename: str = "big.bin"
                     ) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"datapoint\"\r\n\r\n"
           f"{json.dumps(document)}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
           f"name=\"files\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream"
           f"\r\n\r\n").encode()
    yield from chunks
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def temp_parts(service: BenchService) -> list[Path]:
    return list(service.files.tmp_dir.glob("*.part"))


def test_other_requests_are_served_while_an_upload_is_in_progress(
        server: ApiServer, service: BenchService) -> None:
    release = threading.Event()
    first_half = os.urandom(8 * 1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield first_half
        assert release.wait(60), "the test never released the upload"
        yield b"second half"

    result: dict[str, httpx.Response] = {}

    def upload() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            result["upload"] = client.post(
                "datapoint", headers=HEADERS,
                content=multipart_stream({"data_type": "file", "path": "big.bin"}, chunks()))

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        wait_until(lambda: any(p.stat().st_size > 0 for p in temp_parts(service)),
                   what="the upload to reach the file store")
        with httpx.Client(base_url=server.url, timeout=5) as other:
            assert other.get("health").status_code == 200
            posted = other.post("datapoint", data={"datapoint": json.dumps(
                {"data_type": "json", "value": "meanwhile"})})
            assert posted.status_code == 200
            assert other.get(f"datapoint/{posted.json()['_id']}").status_code == 200
        assert "upload" not in result
    finally:
        release.set()
        uploader.join(60)
    response = result["upload"]
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(first_half + b"second half").hexdigest()


def _capture_notes(service: BenchService) -> list[dict]:
    notes = service.capture_notes.dir
    return [json.loads(p.read_text()) for p in notes.glob("*.json")] if notes.is_dir() else []


def test_an_upload_in_flight_is_noted_so_a_crash_is_reported(
        server: ApiServer, service: BenchService) -> None:
    """Uploads go through the service's one staging path: held and noted (front end: the
    REST API) until the row is committed, so a crash mid-upload is listed as an
    interrupted capture; the note ends with the answer."""
    release = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield os.urandom(8 * 1024 * 1024)
        assert release.wait(60), "the test never released the upload"
        yield b"tail"

    result: dict[str, httpx.Response] = {}

    def upload() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            result["upload"] = client.post(
                "datapoint", headers=HEADERS, content=multipart_stream(
                    {"data_type": "file", "path": "big.bin"}, chunks(), filename="run7.bin"))

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        wait_until(lambda: any(p.stat().st_size > 0 for p in temp_parts(service)),
                   what="the upload to reach the file store")
        notes = _capture_notes(service)
        assert [n["front_end"] for n in notes] == [capture_notes.SERVICE]
        assert "run7.bin" in notes[0]["source"]
    finally:
        release.set()
        uploader.join(60)
    assert result["upload"].status_code == 200, result["upload"].text
    assert _capture_notes(service) == [] and service.interrupted_captures() == []


def test_upload_memory_stays_flat(server: ApiServer, service: BenchService) -> None:
    block = os.urandom(1024 * 1024)
    total_mib = 128

    def chunks() -> Iterator[bytes]:
        for _ in range(total_mib):
            yield block

    tracemalloc.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            response = client.post("datapoint", headers=HEADERS, content=multipart_stream(
                {"data_type": "file", "path": "big.bin"}, chunks()))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    assert response.json()["size_bytes"] == total_mib * 1024 * 1024
    # Client and server share this process; the file store's three 4 MiB buffers dominate.
    assert peak < 32 * 1024 * 1024, f"peak Python memory {peak / 1048576:.1f} MiB"


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
        server: ApiServer, service: BenchService) -> None:
    head = b"".join(multipart_stream({"data_type": "file", "path": "x"}, iter([])))
    head = head[: head.index(b"\r\n--" + BOUNDARY.encode() + b"--")]
    request = (f"POST /datapoint HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Content-Type: {HEADERS['content-type']}\r\n"
               f"Content-Length: {len(head) + 20_000_000}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(request + head + os.urandom(9_000_000))  # > one 4 MiB store buffer
        wait_until(lambda: any(p.stat().st_size > 0 for p in temp_parts(service)),
                   what="the upload to start")
    wait_until(lambda: not temp_parts(service), what="the abandoned upload to be removed")
    assert service.count() == 0
    assert not [p for p in service.files.blobs_dir.rglob("*") if p.is_file()]
    wait_until(lambda: _capture_notes(service) == [], what="the upload's note to end")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("health").json()["total_datapoints"] == 0


def test_a_lost_response_then_the_retry_stores_one_datapoint(
        server: ApiServer, service: BenchService) -> None:
    """MADSci's client re-sends a POST after a timeout; the first may have been stored."""
    document = {"data_type": "json", "datapoint_id": new_ulid(), "value": {"t": 1},
                "data_timestamp": "2026-01-01T00:00:00"}
    form = httpx.Request("POST", "http://x/", data={"datapoint": json.dumps(document)})
    form.read()
    request = (f"POST /datapoint HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Content-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(form.content)}\r\n\r\n").encode() + form.content
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(request)  # and hang up without reading the answer
    wait_until(lambda: service.count() == 1, what="the first POST to be stored")
    with httpx.Client(base_url=server.url) as client:
        retry = client.post("datapoint", data={"datapoint": json.dumps(document)})
    assert retry.status_code == 200 and retry.json()["_id"] == document["datapoint_id"]
    assert service.count() == 1


def test_a_token_is_required_when_set(service: BenchService) -> None:
    with ApiServer(service, port=0, token="s3cret-t0ken") as api:
        with httpx.Client(base_url=api.url) as client:
            refused = client.get("health")
            assert refused.status_code == 401
            assert "token" in refused.json()["detail"]
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert client.get("health", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get("health", headers={"Authorization": "Bearer s3cret-t0ken"}).status_code == 200
            assert client.get("health", headers={"X-Bench-Token": "s3cret-t0ken"}).status_code == 200
            assert client.get("health", auth=("anyone", "s3cret-t0ken")).status_code == 200
            assert client.get("settings", auth=("a", "s3cret-t0ken")).json()["settings"][
                "token_required"] is True
        with httpx.Client(base_url=api.url.replace("http://", "http://bench:s3cret-t0ken@")) as url_auth:
            assert url_auth.get("health").status_code == 200


def test_web_pages_and_rebinding_hosts_are_refused(http: httpx.Client, server: ApiServer) -> None:
    hostile_form = http.post("datapoint", data={"datapoint": json.dumps({"data_type": "json"})},
                             headers={"Origin": "https://evil.example"})
    assert hostile_form.status_code == 403 and "Origin" in hostile_form.json()["detail"]
    rebound = http.get("health", headers={"Host": f"evil.example:{server.port}"})
    assert rebound.status_code == 403 and "loopback" in rebound.json()["detail"]
    assert http.get("health", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_listening_beyond_loopback_needs_a_token(service: BenchService) -> None:
    with pytest.raises(ApiConfigError, match="needs a token"):
        ApiServer(service, host="0.0.0.0", port=0)
    with pytest.raises(ApiConfigError, match="needs a token"):
        make_component(service, RunOptions(api_host="192.168.1.10"))
    check_bind("0.0.0.0", "a-token")  # allowed with a token
    check_bind("::1", None)
    check_bind("localhost", None)


def test_a_port_in_use_is_a_clear_error(server: ApiServer, service: BenchService) -> None:
    with pytest.raises(ApiConfigError, match="already in use.*--api-port"):
        ApiServer(service, port=server.port).start()


def test_component_options_and_environment(service: BenchService,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_component(service, RunOptions(api=False)) is None
    monkeypatch.setenv("BENCHDATA_API_PORT", "not-a-port")
    with pytest.raises(ApiConfigError, match="BENCHDATA_API_PORT"):
        make_component(service, RunOptions())
    monkeypatch.setenv("BENCHDATA_API_PORT", "8123")
    component = make_component(service, RunOptions())
    assert component is not None and component.server.requested_port == 8123
    assert component.server.host == "127.0.0.1"
    component = make_component(service, RunOptions(api_port=0))
    assert component is not None and component.server.requested_port == 0
    runner = HeadlessRunner(service, RunOptions(api_port=0), factories=[make_component])
    runner.start()
    try:
        api = runner.components[0]
        with httpx.Client(base_url=api.server.url) as client:  # type: ignore[attr-defined]
            assert client.get("health").status_code == 200
    finally:
        runner.stop()
    runner.stop()  # idempotent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_benchdata_run_serves_the_api(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "BENCHDATA_HOME": str(tmp_path / "home"), "BENCHDATA_API_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "run", "--no-watch",
         "--no-sync", "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=5) as client:
            def answering() -> bool:
                assert process.poll() is None, process.communicate()
                try:
                    return client.get("health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(answering, 60, what="benchdata run to serve the API")
            posted = client.post("datapoint", data={"datapoint": json.dumps(
                {"data_type": "json", "label": "from run", "value": 1})})
            assert posted.status_code == 200
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    with BenchService(tmp_path / "home" / "data") as bench:
        assert [dp.label for dp in bench.latest(5)] == ["from run"]
