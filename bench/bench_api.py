"""The local REST API against MADSci 0.8.1's own Data Manager server, measured alike.

    python bench/bench_api.py [--sequential 2000] [--threads 8] [--per-thread 400]
                              [--stored 100000] [--gets 1000] [--big-mib 1024]

Both servers run as separate processes on 127.0.0.1 and are driven by the same httpx
load generator from this process, sending what MADSci's ``DataClient`` sends (an
urlencoded ``datapoint`` form field; a multipart ``files`` part for files):

* ingest: small value datapoints, one keep-alive client (sequential) and 8 threads;
* GET /datapoint/{id}: p50/p99 with ``--stored`` datapoints already in each store
  (filled in-process before the server starts: ours with ``submit_many``, MADSci's
  in-memory document handler with ``insert_one``), random ids;
* a ``--big-mib`` file: upload and download (MB/s) on a fresh server of each kind, with
  the server's peak RSS (VmHWM, reset before each transfer through /proc/PID/clear_refs)
  and its growth over the idle RSS.

MADSci runs in its own venv (``tests/madsci_env.py`` builds it) with its in-memory
document handler, started by ``DataManager(...).run_server()`` — its uvicorn uses
httptools+uvloop, which that venv has; ours runs on whatever this environment has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from _common import ROOT, bench_dir, emit, percentiles_ms

import httpx
from ulid import ULID

sys.path.insert(0, str(ROOT))
from tests.madsci_env import ensure_madsci_venv  # noqa: E402

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


def ingest_sequential(url: str, count: int) -> float:
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(10):  # warm up the connection
            client.post("datapoint", data=value_form(i)).raise_for_status()
        start = time.perf_counter()
        for i in range(count):
            client.post("datapoint", data=value_form(i)).raise_for_status()
        return count / (time.perf_counter() - start)


def ingest_threads(url: str, threads: int, per_thread: int) -> float:
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                client.post("datapoint", data=value_form(-1)).raise_for_status()
                barrier.wait()
                for i in range(per_thread):
                    client.post("datapoint", data=value_form(i)).raise_for_status()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    barrier.wait()
    start = time.perf_counter()
    for worker_thread in workers:
        worker_thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return threads * per_thread / elapsed


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


def measure(kind: str, work: Path, args: argparse.Namespace, madsci_python: Optional[Path],
            big: Path, big_sha256: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    server = Server(kind, work, args.stored, madsci_python)
    try:
        result["get"] = percentiles_ms(get_latencies(server.url, server.ids, args.gets))
        result["sequential_per_s"] = round(ingest_sequential(server.url, args.sequential), 1)
        result["threads_per_s"] = round(ingest_threads(server.url, args.threads, args.per_thread), 1)
    finally:
        server.stop()
    if args.big_mib:
        server = Server(kind, work, 0, madsci_python)
        try:
            result["big_file"] = big_file(server, big, big_sha256)
        finally:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=400)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--skip-madsci", action="store_true")
    args = parser.parse_args()
    madsci_python = None if args.skip_madsci else ensure_madsci_venv()
    work = bench_dir()
    try:
        big = work / "big.bin"
        big_sha256 = make_big_file(big, args.big_mib) if args.big_mib else ""
        ours = measure("ours", work, args, None, big, big_sha256)
        madsci = (measure("madsci", work, args, madsci_python, big, big_sha256)
                  if madsci_python else None)
        report: dict[str, Any] = {
            "benchmark": "rest_api",
            "ingest_sequential": {"count": args.sequential, "ours_per_s": ours["sequential_per_s"]},
            "ingest_threads": {"threads": args.threads, "count": args.threads * args.per_thread,
                               "ours_per_s": ours["threads_per_s"]},
            "get_by_id": {"stored": args.stored, "ours": ours["get"]},
            "big_file": {"size_mib": args.big_mib, "ours": ours.get("big_file")},
            "goals": {"ingest": ">= 5x MADSci", "get": "p50/p99 <= MADSci",
                      "upload_rss_growth": "<= 100 MB"},
            "durability": "ours: every POST committed with WAL synchronous=FULL and the file "
                          "fsync-ed; MADSci: in-memory documents, no fsync",
        }
        if madsci is not None:
            report["ingest_sequential"].update(
                madsci_per_s=madsci["sequential_per_s"],
                ratio=round(ours["sequential_per_s"] / madsci["sequential_per_s"], 2))
            report["ingest_threads"].update(
                madsci_per_s=madsci["threads_per_s"],
                ratio=round(ours["threads_per_s"] / madsci["threads_per_s"], 2))
            report["get_by_id"]["madsci"] = madsci["get"]
            report["big_file"]["madsci"] = madsci.get("big_file")
        emit(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
