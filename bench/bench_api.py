"""The local REST API against MADSci 0.8.1's own Data Manager server, measured alike.

    python bench/bench_api.py [--sequential 2000] [--threads 8] [--per-thread 400]
                              [--rounds 3] [--stored 100000] [--gets 1000] [--big-mib 1024]

Both servers run as separate processes on 127.0.0.1, side by side, and are driven from
this process by the same clients, sending what MADSci's ``DataClient`` sends (an
urlencoded ``datapoint`` form field; a multipart ``files`` part for files):

* ingest of small value datapoints, one keep-alive connection (sequential) and
  ``--threads`` connections on as many threads, with two clients:

  - ``lean``: a minimal keep-alive HTTP/1.1 client (one socket, requests encoded before
    the clock starts, ~40 µs of client CPU per request). This measures the servers: the
    load generator shares the machine's cores with them, and a heavy client would
    mostly measure itself.
  - ``httpx``: an ``httpx.Client`` with keep-alive, as MADSci's ``DataClient`` uses
    (~0.7 ms of client CPU per request here): what a Python script sees end to end.

  Each of ``--rounds`` rounds measures both servers in turn (the order alternates), so
  a slow moment of a shared machine hits both; medians of the rounds are reported,
  with each round's figures. The bodies (fresh ULIDs) are built before timing.
* the disk's durable-commit ceiling in the same run: single-row SQLite commits in WAL
  mode with ``synchronous=FULL`` (one fsync each), in the benchmark's folder, before
  and after the ingest rounds. Our sequential ingest cannot beat it: every POST is
  committed durably before it is answered (concurrent POSTs share a commit).
* GET /datapoint/{id}: p50/p99 with ``--stored`` datapoints already in each store
  (filled in-process before the server starts: ours with ``submit_many``, MADSci's
  in-memory document handler with ``insert_one``), random ids;
* a ``--big-mib`` file: upload and download (MB/s) on a fresh server of each kind, with
  the server's peak RSS (VmHWM, reset before each transfer through /proc/PID/clear_refs)
  and its growth over the idle RSS.

MADSci runs in its own venv (``tests/support/madsci_env.py`` builds it) with its in-memory
document handler (no disk writes at all), started by ``DataManager(...).run_server()`` —
its uvicorn uses httptools+uvloop, which that venv has; ours runs on whatever this
environment has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from _common import ROOT, bench_dir, emit, percentiles_ms

import httpx
from ulid import ULID

sys.path.insert(0, str(ROOT))
from tests.support.madsci_env import ensure_madsci_venv  # noqa: E402

OURS_SERVER = r"""
import json, sys
from app.api.server import ApiServer
from app.core.models import ValueDataPoint
from app.service import BenchService
data_dir, stored, ids_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
service = BenchService(data_dir)
ids, batch = [], []
for i in range(stored):
    batch.append(ValueDataPoint(label=f"reading-{i % 50}", value={"t": 20 + (i % 100) / 10, "unit": "C", "i": i}))
    if len(batch) == 5000 or i == stored - 1:
        ids += [dp.datapoint_id for dp in service.submit_many(batch)]
        batch = []
open(ids_file, "w").write("\n".join(ids))
server = ApiServer(service, port=int(sys.argv[4]))
server.start()
print("READY", flush=True)
sys.stdin.read()
server.stop()
service.close()
"""

MADSCI_SERVER = r"""
import sys, warnings
warnings.simplefilter("ignore")
from madsci.common.db_handlers.document_storage_handler import InMemoryDocumentStorageHandler
from madsci.common.types.datapoint_types import DataManagerSettings, ValueDataPoint
from madsci.data_manager.data_server import DataManager
storage, stored, ids_file, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
settings = DataManagerSettings(file_storage_path=storage, server_url=f"http://127.0.0.1:{port}/")
handler = InMemoryDocumentStorageHandler(database_name="madsci_data")
manager = DataManager(settings=settings, document_handler=handler)
ids = []
for i in range(stored):
    dp = ValueDataPoint(label=f"reading-{i % 50}", value={"t": 20 + (i % 100) / 10, "unit": "C", "i": i})
    manager.datapoints.insert_one(dp.to_mongo())
    ids.append(dp.datapoint_id)
open(ids_file, "w").write("\n".join(ids))
manager.run_server(host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    """One server process of either kind."""

    def __init__(self, kind: str, work: Path, stored: int, madsci_python: Optional[Path]) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.ids_file = work / f"{kind}-ids.txt"
        data = work / f"{kind}-data-{self.port}"
        data.mkdir()
        if kind == "ours":
            command = [sys.executable, "-c", OURS_SERVER, str(data), str(stored),
                       str(self.ids_file), str(self.port)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
        else:
            assert madsci_python is not None
            command = [str(madsci_python), "-c", MADSCI_SERVER, str(data), str(stored),
                       str(self.ids_file), str(self.port)]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.process = subprocess.Popen(command, env=env, cwd=work, stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()
        self.ids = self.ids_file.read_text().split("\n") if stored else []

    def _wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} server died: "
                                       f"{self.process.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
                try:
                    if client.get(self.url + "health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server did not start")

    def stop(self) -> None:
        if self.kind == "ours":
            assert self.process.stdin is not None
            self.process.stdin.close()
        else:
            self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        if self.process.stderr is not None:
            self.process.stderr.close()


def value_form(i: int) -> dict[str, str]:
    """What MADSci's DataClient posts for a ValueDataPoint."""
    document = {"label": "temp", "ownership_info": {}, "data_type": "json",
                "datapoint_id": str(ULID()), "data_timestamp": datetime.now().isoformat(),
                "value": {"t": 23.5, "i": i}}
    return {"datapoint": json.dumps(document)}


class LeanConnection:
    """A minimal keep-alive HTTP/1.1 client: one socket, requests encoded beforehand,
    answers framed by Content-Length (both servers send it for JSON answers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def post_form(self, form: dict[str, str]) -> bytes:
        """``POST /datapoint`` with an urlencoded body, encoded now."""
        body = urlencode(form).encode("ascii")
        return (b"POST /datapoint HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % (self.port, len(body))) + body

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self._socket.sendall(raw)
        buffer = self._buffer
        while (head_end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._receive()
        head = buffer[:head_end].lower()
        status = int(head[9:12])
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            raise RuntimeError(f"an answer without Content-Length: {head!r}")
        line_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17:line_end if line_end >= 0 else None])
        end = head_end + 4 + length
        while len(buffer) < end:
            buffer += self._receive()
        self._buffer = buffer[end:]
        return status, buffer[head_end + 4:end]

    def _receive(self) -> bytes:
        chunk = self._socket.recv(256 * 1024)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self._socket.close()


def _check(status: int, body: bytes, datapoint_id: str) -> None:
    if status != 200 or datapoint_id.encode() not in body:
        raise RuntimeError(f"POST /datapoint answered {status}: {body[:300]!r}")


def _forms(count: int) -> list[tuple[dict[str, str], str]]:
    forms = [value_form(i) for i in range(count)]
    return [(form, json.loads(form["datapoint"])["datapoint_id"]) for form in forms]


def lean_post_all(port: int, forms: list[tuple[dict[str, str], str]],
                  ready: Optional[threading.Barrier] = None) -> float:
    """Post every form on one connection; seconds taken (after ``ready``, if given)."""
    connection = LeanConnection(port)
    try:
        requests = [(connection.post_form(form), datapoint_id) for form, datapoint_id in forms]
        for raw, datapoint_id in requests[:5]:  # warm up the connection
            _check(*connection.request(raw), datapoint_id)
        if ready is not None:
            ready.wait()
        start = time.perf_counter()
        for raw, datapoint_id in requests[5:]:
            _check(*connection.request(raw), datapoint_id)
        return time.perf_counter() - start
    finally:
        connection.close()


def httpx_post_all(url: str, forms: list[tuple[dict[str, str], str]],
                   ready: Optional[threading.Barrier] = None) -> float:
    with httpx.Client(base_url=url, timeout=60) as client:
        for form, datapoint_id in forms[:5]:
            response = client.post("datapoint", data=form)
            _check(response.status_code, response.content, datapoint_id)
        if ready is not None:
            ready.wait()
        start = time.perf_counter()
        for form, datapoint_id in forms[5:]:
            response = client.post("datapoint", data=form)
            _check(response.status_code, response.content, datapoint_id)
        return time.perf_counter() - start


def post_all(client: str, server: "Server", forms: list[tuple[dict[str, str], str]],
             ready: Optional[threading.Barrier] = None) -> float:
    if client == "lean":
        return lean_post_all(server.port, forms, ready)
    return httpx_post_all(server.url, forms, ready)


def ingest_sequential(client: str, server: "Server", count: int) -> float:
    """Datapoints per second over one keep-alive connection."""
    return count / post_all(client, server, _forms(count + 5))


def ingest_threads(client: str, server: "Server", threads: int, per_thread: int) -> float:
    """Datapoints per second with ``threads`` connections posting at once."""
    batches = [_forms(per_thread + 5) for _ in range(threads)]
    ready = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(forms: list[tuple[dict[str, str], str]]) -> None:
        try:
            post_all(client, server, forms, ready)
        except BaseException as exc:
            errors.append(exc)
            ready.abort()

    workers = [threading.Thread(target=worker, args=(batch,)) for batch in batches]
    for worker_thread in workers:
        worker_thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for worker_thread in workers:
        worker_thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return threads * per_thread / elapsed


def durable_commits_per_s(folder: Path, count: int = 500) -> float:
    """The disk's ceiling for one-at-a-time durable commits: single-row SQLite commits,
    WAL, synchronous=FULL — what every sequential POST must wait for at least."""
    path = folder / f"fsync-probe-{os.getpid()}.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, text TEXT)")
        start = time.perf_counter()
        for i in range(count):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO probe (text) VALUES (?)", ("x" * 200,))
            connection.execute("COMMIT")
        return count / (time.perf_counter() - start)
    finally:
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def get_latencies(url: str, ids: list[str], count: int, budget_s: float = 120) -> list[float]:
    rng = random.Random(42)
    sample = [rng.choice(ids) for _ in range(count)]
    latencies = []
    deadline = time.monotonic() + budget_s
    with httpx.Client(base_url=url, timeout=60) as client:
        for datapoint_id in sample[:20]:
            client.get(f"datapoint/{datapoint_id}").raise_for_status()
        for datapoint_id in sample:
            start = time.perf_counter()
            client.get(f"datapoint/{datapoint_id}").raise_for_status()
            latencies.append(time.perf_counter() - start)
            if time.monotonic() > deadline:
                break
    return latencies


def make_big_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(16 * 1024 * 1024)
    with open(path, "wb") as out:
        for i in range(0, mib, 16):
            piece = block[: min(16, mib - i) * 1024 * 1024]
            piece = i.to_bytes(8, "little") + piece[8:]  # no two blocks alike
            out.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def big_file(server: Server, path: Path, sha256: str) -> dict[str, Any]:
    size = path.stat().st_size
    pid = server.process.pid
    idle = proc_status(pid)["VmRSS"]
    reset_peak_rss(pid)
    document = {"label": "big", "ownership_info": {}, "data_type": "file",
                "datapoint_id": str(ULID()), "data_timestamp": datetime.now().isoformat(),
                "path": str(path)}
    with httpx.Client(base_url=server.url, timeout=900) as client, open(path, "rb") as handle:
        start = time.perf_counter()
        response = client.post("datapoint", data={"datapoint": json.dumps(document)},
                               files={"files": (path.name, handle, "application/octet-stream")})
        upload_s = time.perf_counter() - start
        response.raise_for_status()
        upload_peak = proc_status(pid)["VmHWM"]
        reset_peak_rss(pid)
        idle_before_download = proc_status(pid)["VmRSS"]
        digest = hashlib.sha256()
        start = time.perf_counter()
        with client.stream("GET", f"datapoint/{document['datapoint_id']}/value") as stream:
            stream.raise_for_status()
            for chunk in stream.iter_bytes(1024 * 1024):
                digest.update(chunk)
        download_s = time.perf_counter() - start
        download_peak = proc_status(pid)["VmHWM"]
    return {
        "upload_MB_per_s": round(size / upload_s / 1e6, 1),
        "upload_peak_rss_mb": round(upload_peak, 1),
        "upload_rss_growth_mb": round(upload_peak - idle, 1),
        "download_MB_per_s": round(size / download_s / 1e6, 1),
        "download_peak_rss_mb": round(download_peak, 1),
        "download_rss_growth_mb": round(download_peak - idle_before_download, 1),
        "download_byte_exact": digest.hexdigest() == sha256,
        "idle_rss_mb": round(idle, 1),
    }


CLIENTS = ("lean", "httpx")
MODES = ("sequential", "threads")


def ingest_rounds(servers: dict[str, Server], args: argparse.Namespace,
                  work: Path) -> dict[str, Any]:
    """Every (client, mode) for every server, ``args.rounds`` times, servers alternating."""
    runs: dict[tuple[str, str, str], list[float]] = {}
    ceiling = [durable_commits_per_s(work)]
    order = list(servers)
    for round_index in range(args.rounds):
        kinds = order if round_index % 2 == 0 else order[::-1]
        for client in CLIENTS:
            for kind in kinds:
                server = servers[kind]
                runs.setdefault((client, "sequential", kind), []).append(
                    ingest_sequential(client, server, args.sequential))
                runs.setdefault((client, "threads", kind), []).append(
                    ingest_threads(client, server, args.threads, args.per_thread))
    ceiling.append(durable_commits_per_s(work))
    report: dict[str, Any] = {
        "rounds": args.rounds,
        "sequential_count": args.sequential,
        "threads": args.threads,
        "threads_count": args.threads * args.per_thread,
        "disk_durable_commits_per_s": [round(x) for x in ceiling],
    }
    for client in CLIENTS:
        for mode in MODES:
            report[f"{client}_client_{mode}"] = _summary(
                {kind: runs[client, mode, kind] for kind in servers})
    return report


def _summary(by_kind: dict[str, list[float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind, rates in by_kind.items():
        summary[f"{kind}_per_s"] = round(statistics.median(rates), 1)
        summary[f"{kind}_runs"] = [round(rate) for rate in rates]
    if "madsci" in by_kind:
        ours, madsci = by_kind["ours"], by_kind["madsci"]
        summary["ratio"] = round(statistics.median(ours) / statistics.median(madsci), 2)
        summary["ratio_per_round"] = [round(o / m, 2) for o, m in zip(ours, madsci)]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--skip-madsci", action="store_true")
    args = parser.parse_args()
    madsci_python = None if args.skip_madsci else ensure_madsci_venv()
    work = bench_dir()
    kinds = ["ours"] + (["madsci"] if madsci_python else [])
    try:
        servers: dict[str, Server] = {}
        try:
            for kind in kinds:
                servers[kind] = Server(kind, work, args.stored, madsci_python)
            gets = {kind: percentiles_ms(get_latencies(server.url, server.ids, args.gets))
                    for kind, server in servers.items()}
            ingest = ingest_rounds(servers, args, work)
        finally:
            for server in servers.values():
                server.stop()
        big_files: dict[str, Any] = {}
        if args.big_mib:
            big = work / "big.bin"
            big_sha256 = make_big_file(big, args.big_mib)
            for kind in kinds:
                server = Server(kind, work, 0, madsci_python)
                try:
                    big_files[kind] = big_file(server, big, big_sha256)
                finally:
                    server.stop()
        emit({
            "benchmark": "rest_api",
            "ingest": ingest,
            "get_by_id": {"stored": args.stored, **gets},
            "big_file": {"size_mib": args.big_mib, **big_files},
            "goals": {"ingest": ">= 5x MADSci", "get": "p50/p99 <= MADSci",
                      "upload_rss_growth": "<= 100 MB"},
            "durability": "ours: every POST committed with WAL synchronous=FULL (and a "
                          "file fsync-ed) before it is answered; concurrent POSTs share "
                          "a commit. MADSci: in-memory documents, nothing written",
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
