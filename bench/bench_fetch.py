"""A central-only file served by a second bench vs the minio SDK's ``fget_object``, same run.

    python bench/bench_fetch.py [--file-mib 64] [--rounds 3]      # --file-mib 1024: 1 GiB

Starts SeaweedFS and nx-27017 (as the tests do). Bench A captures one file of
``--file-mib`` MiB and syncs it; then, each round, a fresh bench B pulls the record and
asks for the bytes through the one path every front end uses (``BenchService.open_file``:
download into the file store, SHA-256 verified, fsynced, then served), and the baseline
downloads the same object with ``Minio.fget_object`` into a file beside it (no hashing,
no fsync). Order alternates between rounds. Prints JSON:

* ``time_to_first_byte_s``: from the request to the first byte in hand (ours must verify
  the whole file first; the baseline's first byte arrives with the response).
* ``throughput_mib_s``: size / time until the last byte is in hand (ours read back from the
  cache), medians of the rounds; ``ratio`` = ours / baseline, median of per-round ratios.
  Goal >= 0.8. Our cached copy is fsynced (durable, like every blob); the baseline's is
  not, so ``fget_object_then_fsync`` (the same download, then fsync) is reported too, and
  ``fget_object_then_sha256`` (the same download, then ``hashlib.file_digest`` of it: what
  a careful SDK user does to verify before use) with ``ratio_vs_fget_object_then_sha256``.
* ``cpu_s``: CPU seconds (user + system, all threads) per download, medians: this
  process for ours and for ``fget_object``, and the S3 server's for each. On a machine
  whose cores are busy the wall-clock ratio tends to (server + baseline) / (server + ours)
  CPU: SHA-256 is work the baseline does not do, and overlapping it on a second thread
  only helps while a core is idle.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from _common import bench_dir, emit

from tests.support.servers import MongoServer, SeaweedServer, central_env, central_settings  # noqa: E402

CHUNK = 1024 * 1024


def _cpu_s() -> float:
    """This process's CPU seconds so far, every thread (the hashing thread too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_s(pid: int) -> float:
    """The CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            out.write(chunk)
            written += len(chunk)


def _ours(workdir: Path, settings: Any, ident: str, round_: int,
          server_pid: int) -> tuple[float, float, float, float]:
    """(first byte s, last byte s, our CPU s, the server's CPU s)."""
    from app.service import BenchService
    from sync.engine import SyncEngine

    data_dir = workdir / f"b-{round_}"
    with BenchService(data_dir) as bench:
        with SyncEngine(bench, settings) as engine:
            assert engine.run_pass(force=True).ok
        cpu, server_cpu = _cpu_s(), _server_cpu_s(server_pid)
        started = time.perf_counter()
        with bench.open_file(ident) as stream:
            stream.read(1)
            first = time.perf_counter() - started
            while stream.read(CHUNK):
                pass
        total = time.perf_counter() - started
        cpu, server_cpu = _cpu_s() - cpu, _server_cpu_s(server_pid) - server_cpu
    shutil.rmtree(data_dir, ignore_errors=True)
    return first, total, cpu, server_cpu


def _baseline(workdir: Path, settings: Any, object_name: str, round_: int,
              server_pid: int) -> tuple[float, ...]:
    """(first byte s, fget_object s, fget_object + fsync s, fget_object + SHA-256 s,
    fget_object's CPU s, the server's CPU s): the file store's copy is durable and
    verified, so the time to make the baseline's copy durable, or verified, is reported
    beside it."""
    from sync.objects import ObjectStore

    target = workdir / f"fget-{round_}.bin"
    with ObjectStore(settings) as objects:
        started = time.perf_counter()
        response = objects.client.get_object(settings.bucket, object_name)
        response.read(1)
        first = time.perf_counter() - started
        response.close()
        response.release_conn()
        cpu, server_cpu = _cpu_s(), _server_cpu_s(server_pid)
        started = time.perf_counter()
        objects.client.fget_object(settings.bucket, object_name, str(target))
        total = time.perf_counter() - started
        cpu, server_cpu = _cpu_s() - cpu, _server_cpu_s(server_pid) - server_cpu
        with open(target, "rb") as written:
            os.fsync(written.fileno())
        durable = time.perf_counter() - started
        started = time.perf_counter()
        objects.client.fget_object(settings.bucket, object_name, str(target))
        with open(target, "rb") as written:
            hashlib.file_digest(written, "sha256")
        hashed = time.perf_counter() - started
    target.unlink()
    return first, total, durable, hashed, cpu, server_cpu


def bench_fetch(workdir: Path, weed: SeaweedServer, mongo: MongoServer, size: int,
                rounds: int) -> dict[str, Any]:
    from app.service import BenchService
    from sync.engine import SyncEngine

    settings = central_settings(weed, mongo, weed.make_bucket(), "madsci_bench_fetch")
    # Configured as an operator configures a bench: bench B's service builds its fetcher.
    os.environ.update(central_env(settings))
    source = workdir / "big.bin"
    _write_file(source, size)
    with BenchService(workdir / "a") as bench, SyncEngine(bench, settings) as engine:
        ident = bench.capture_file(source).datapoint_id
        assert engine.run_pass(force=True).ok
        object_name = engine.outbox.objects_for([ident])[ident]["object_name"]
    source.unlink()
    ours: list[tuple[float, float, float, float]] = []
    base: list[tuple[float, ...]] = []
    assert weed.proc is not None
    pid = weed.proc.pid
    for round_ in range(rounds):
        if round_ % 2 == 0:
            ours.append(_ours(workdir, settings, ident, round_, pid))
            base.append(_baseline(workdir, settings, object_name, round_, pid))
        else:
            base.append(_baseline(workdir, settings, object_name, round_, pid))
            ours.append(_ours(workdir, settings, ident, round_, pid))
    mib = size / CHUNK

    def rate(seconds: list[float]) -> float:
        return round(statistics.median(mib / s for s in seconds), 1)

    return {
        "file_mib": round(mib, 1), "rounds": rounds,
        "time_to_first_byte_s": {
            "ours": round(statistics.median(o[0] for o in ours), 3),
            "fget_object_baseline": round(statistics.median(b[0] for b in base), 3)},
        "throughput_mib_s": {"ours": rate([o[1] for o in ours]),
                             "fget_object_baseline": rate([b[1] for b in base]),
                             "fget_object_then_fsync": rate([b[2] for b in base]),
                             "fget_object_then_sha256": rate([b[3] for b in base])},
        "cpu_s": {"ours": round(statistics.median(o[2] for o in ours), 3),
                  "fget_object_baseline": round(statistics.median(b[4] for b in base), 3),
                  "server_for_ours": round(statistics.median(o[3] for o in ours), 3),
                  "server_for_fget_object": round(statistics.median(b[5] for b in base), 3)},
        "ratio": round(statistics.median(b[1] / o[1] for o, b in zip(ours, base)), 3),
        "ratio_vs_fget_object_then_fsync": round(
            statistics.median(b[2] / o[1] for o, b in zip(ours, base)), 3),
        "ratio_vs_fget_object_then_sha256": round(
            statistics.median(b[3] / o[1] for o, b in zip(ours, base)), 3),
        "goal_ratio": 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mib", type=int, default=64, help="1024 for the 1 GiB case.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = bench_dir()
    weed = SeaweedServer(workdir / "weed")
    mongo = MongoServer(workdir / "nx")
    weed.start()
    mongo.start()
    try:
        result = {"benchmark": "fetch",
                  "central_only_file": bench_fetch(workdir, weed, mongo,
                                                   args.file_mib * CHUNK, args.rounds)}
    finally:
        weed.stop()
        mongo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
