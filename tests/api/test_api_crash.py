"""`benchdata run` SIGKILLed while a client posts to its REST API, many times.

The client is its own process with its own ledger: it appends a line (fsynced) for each
datapoint only after the server answered 2xx, so the ledger is exactly what the API
acknowledged. The server is killed at random moments and restarted; at the end every
acknowledged datapoint is in the store with its exact content, and nothing is there twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.support.servers import free_port
from tests.support.waiting import wait_until

from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
CLI = "from app.cli import main; main()"
TRIALS = 8

# Posts values and, every fourth time, a small file, each with a unique token; records
# a datapoint in the ledger only after a 2xx answer. A refused or failed post (the server
# is down or was killed mid-request) is simply not acknowledged; the next post has a new
# token, so a lost answer can never become a duplicate on its own.
CLIENT = r"""
import hashlib, json, os, random, sys, time, uuid
import httpx
url, ledger_path, stop_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
tried = open(ledger_path + ".tried", "a")  # every file's SHA-256 before it is posted
with httpx.Client(base_url=url, timeout=10) as client:
    n = 0
    while not os.path.exists(stop_path):
        n += 1
        token = uuid.uuid4().hex
        try:
            if n % 4 == 0:
                data = rng.randbytes(rng.choice([0, 1, 4096, 300_000, 3_000_000]))
                tried.write(hashlib.sha256(data).hexdigest() + "\n")
                tried.flush()
                document = {"data_type": "file", "label": token, "path": f"{token}.bin"}
                answer = client.post("datapoint", data={"datapoint": json.dumps(document)},
                                     files={"files": (f"{token}.bin", data)})
                entry = {"kind": "file", "token": token,
                         "sha256": hashlib.sha256(data).hexdigest()}
            else:
                value = {"token": token, "n": n, "x": rng.random()}
                document = {"data_type": "json", "label": token, "value": value}
                answer = client.post("datapoint", data={"datapoint": json.dumps(document)})
                entry = {"kind": "value", "token": token, "value": value}
        except httpx.HTTPError:
            time.sleep(0.02)
            continue
        if 200 <= answer.status_code < 300:
            entry["id"] = answer.json()["_id"]
            os.write(ledger, (json.dumps(entry) + "\n").encode())
            os.fsync(ledger)
        elif answer.status_code >= 500:
            print(f"server error {answer.status_code}: {answer.text}", file=sys.stderr)
            sys.exit(3)
"""


def _start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "--data-dir", str(data_dir), "run", "--no-watch",
             "--no-sync", "--api-port", str(port), "--log-level", "WARNING"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _answering(url: str, server: subprocess.Popen[bytes], log: Path) -> bool:
    assert server.poll() is None, log.read_text(errors="replace")
    try:
        return httpx.get(f"{url}health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ledger(path: Path) -> list[dict]:
    """The client's acknowledged lines. It may be writing the last one right now: only
    lines that end with a newline are complete."""
    if not path.exists():
        return []
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line]


@pytest.mark.slow
def test_sigkilled_api_server_keeps_every_acknowledged_datapoint(tmp_path: Path) -> None:
    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir, ledger, stop = tmp_path / "bench", tmp_path / "ledger.jsonl", tmp_path / "stop"
    log = tmp_path / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(ledger), str(stop),
                               str(seed)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        for trial in range(TRIALS):
            server = _start_server(data_dir, port, log)
            try:
                wait_until(lambda s=server: _answering(url, s, log), 60, "the API to answer")
                before = len(_ledger(ledger))
                # Killed once a random number of posts were acknowledged (mid-stream: the
                # client never pauses), so each kill lands among requests in flight.
                wanted = before + rng.randrange(1, 40)
                wait_until(lambda w=wanted: len(_ledger(ledger)) >= w or client.poll() is not None,
                           60, "the client to post", interval=0.005)
                time.sleep(rng.uniform(0, 0.05))  # past the ledger's own moment
                assert client.poll() is None, f"seed {seed}: {client.communicate()[1]!r}"
            finally:
                server.send_signal(signal.SIGKILL)
                server.wait(30)
    finally:
        stop.touch()
        try:
            _out, err = client.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            client.kill()
            _out, err = client.communicate()
    assert client.returncode == 0, f"seed {seed}: {err!r}"
    acknowledged = _ledger(ledger)
    assert len(acknowledged) >= TRIALS, f"seed {seed}"
    assert len({e["id"] for e in acknowledged}) == len(acknowledged), f"seed {seed}"

    with BenchService(data_dir) as bench:
        rows = list(bench.iter_query(None))
        by_label: dict[str, list] = {}
        for row in rows:
            by_label.setdefault(str(row.label), []).append(row)
        twice = {label: len(found) for label, found in by_label.items() if len(found) > 1}
        assert not twice, f"seed {seed}: stored twice: {twice}"
        for entry in acknowledged:
            found = by_label.get(entry["token"])
            assert found and found[0].datapoint_id == entry["id"], \
                f"seed {seed}: acknowledged {entry} lost"
            if entry["kind"] == "value":
                assert found[0].value == entry["value"], f"seed {seed}: {entry}"
            else:
                assert found[0].sha256 == entry["sha256"], f"seed {seed}: {entry}"
                assert bench.files.verify(entry["sha256"]), f"seed {seed}: blob damaged"
        for row in rows:  # acknowledged or not (committed just before a kill): whole
            if getattr(row, "sha256", None):
                assert bench.files.verify(str(row.sha256)), f"seed {seed}: {row}"
        # A blob no row uses can only be an upload killed before its commit (the file
        # store has no start-up sweep for those; they cost space, never data).
        used = {str(r.sha256) for r in rows if getattr(r, "sha256", None)}
        on_disk = {p.name for p in bench.files.blobs_dir.rglob("*") if len(p.name) == 64}
        tried = set(Path(f"{ledger}.tried").read_text().split())
        assert on_disk - used <= tried - {e["sha256"] for e in acknowledged
                                          if e["kind"] == "file"}, f"seed {seed}"
        assert not list(bench.files.tmp_dir.iterdir()), f"seed {seed}: temp files left"
        assert bench.store.integrity_check() == "ok"
