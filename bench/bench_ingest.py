"""Folder watching: detection latency, start-up on a big captured folder, idle CPU.

    python bench/bench_ingest.py [--files 200] [--quiet 1.0] [--big 100000] [--idle 30]
                                 [--rounds 5] [--skip-latency] [--skip-startup]

* latency — 200 files written one after another (each in three chunks, 20 files/s) into a
  watched folder with a 1 s quiet period; for each, the time from its last write to the
  moment its datapoint was committed (the watcher's ``captured`` event). Goal: p99 <=
  quiet + 0.5 s. Baseline in the same run: capturing one file directly with
  ``BenchService.submit`` (what the watcher adds on top is waiting and bookkeeping).
* startup — a folder of ``--big`` files that are all already captured (the ledger holds
  each one's size, mtime and SHA-256; see ``--populate``), in a fresh process: time until
  the first reconcile scan is done, and that process's peak RSS. Goals: <= 30 s, <= 300 MB.
  Baselines in the same process: RSS before the watcher starts, and a bare ``os.scandir``
  + ``stat`` walk of the same folder.
* idle — the same process's CPU time over ``--idle`` seconds of watching with nothing
  happening, plus one forced full rescan amortised over the default rescan interval.
  Goal: <= 2 % of one core.
* change_detection — in the same process, the reconcile scan of the unchanged big folder
  as it is now (links never followed; size, mtime, inode and ctime compared with the
  ledger) against the scan before issue 14 (reproduced here: ``is_file()``/``stat()``
  following links, size and mtime only), alternated ``--rounds`` times each; medians.
  Goal: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import ROOT, bench_dir, emit, peak_rss_mb, percentiles_ms

from app.core.ids import new_ulid
from app.core.models import FileDataPoint
from app.ingest.component import IngestComponent
from app.ingest.ledger import Ledger, LedgerEntry
from app.ingest.rules import WatchRule
from app.ingest.watcher import IngestEvent
from app.service import BenchService

DEFAULT_RESCAN = WatchRule(id="x", path="/").rescan_interval


# -- latency --------------------------------------------------------------------------


def bench_latency(workdir: Path, files: int, quiet: float) -> dict[str, object]:
    watched = workdir / "latency-in"
    watched.mkdir()
    captured_at: dict[str, float] = {}
    all_done = threading.Event()

    def on_event(event: IngestEvent) -> None:
        if event.kind == "captured":
            captured_at[event.rel_path] = event.at
            if len(captured_at) >= files:
                all_done.set()

    with BenchService(workdir / "latency-store") as service:
        baseline = []
        for index in range(50):
            source = workdir / f"baseline{index}.csv"
            source.write_bytes(os.urandom(3 * 4096))
            start = time.perf_counter()
            service.submit(FileDataPoint(path=str(source)))
            baseline.append(time.perf_counter() - start)

        rule = WatchRule(id="latency", path=str(watched), quiet_seconds=quiet, observer="native")
        component = IngestComponent(service, [rule])
        component.add_listener(on_event)
        component.start()
        try:
            last_write: dict[str, float] = {}
            for index in range(files):
                name = f"sample{index:04d}.csv"
                with open(watched / name, "wb") as out:
                    for chunk in range(3):
                        if chunk:
                            time.sleep(0.01)
                        out.write(os.urandom(4096))
                        out.flush()
                last_write[name] = time.time()
                time.sleep(0.02)  # about 20 files a second
            if not all_done.wait(quiet * 4 + 120):
                raise SystemExit(f"only {len(captured_at)} of {files} files were captured")
        finally:
            component.stop()
        duplicates = service.count() - 50 - files
    latencies = [captured_at[name] - last_write[name] for name in last_write]
    stats = percentiles_ms(latencies)
    return {
        "files": files,
        "quiet_seconds": quiet,
        "last_write_to_committed": stats,
        "goal_p99_ms": (quiet + 0.5) * 1000,
        "meets_goal": stats["p99_ms"] <= (quiet + 0.5) * 1000,
        "overhead_beyond_quiet_p50_ms": round(stats["p50_ms"] - quiet * 1000, 3),
        "duplicates": duplicates,
        "baseline_direct_submit": percentiles_ms(baseline),
    }


# -- a big folder that is already captured --------------------------------------------------


def make_big_folder(folder: Path, count: int, per_dir: int = 1000) -> None:
    for index in range(count):
        sub = folder / f"run{index // per_dir:04d}"
        if index % per_dir == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"result{index % per_dir:04d}.csv").write_bytes(f"{index},{index * 7}\n".encode())


def populate_ledger(store_dir: Path, folder: Path, rule: WatchRule) -> None:
    """Record every file as captured: real size, mtime and SHA-256 (no blobs written)."""
    from app.ingest.scanner import walk_files

    with BenchService(store_dir) as service:
        ledger = Ledger(service.store)
        batch: list[LedgerEntry] = []
        for entry in walk_files(folder, rule):
            digest = hashlib.sha256((folder / entry.rel_path).read_bytes()).hexdigest()
            batch.append(LedgerEntry(rule.id, entry.rel_path, entry.size, entry.mtime_ns, digest,
                                     new_ulid(), ino=entry.ino, ctime_ns=entry.ctime_ns))
            if len(batch) >= 5000:
                ledger.record(batch)
                batch = []
        ledger.record(batch)


def populate_by_capturing(store_dir: Path, rule: WatchRule, count: int) -> None:
    """Let the watcher itself capture every file (slow: the store fsyncs every blob)."""
    done = threading.Event()
    seen = [0]

    def on_event(event: IngestEvent) -> None:
        if event.kind == "captured":
            seen[0] += 1
            if seen[0] >= count:
                done.set()

    with BenchService(store_dir) as service:
        component = IngestComponent(service, [rule])
        component.add_listener(on_event)
        component.start()
        try:
            done.wait(24 * 3600)
        finally:
            component.stop()


def scan_before_issue_14(ledger: Ledger, root: Path, rule: WatchRule) -> int:
    """The start-up scan's work as it was before inode/ctime checks: walk (following
    links), look up 500 entries at a time, compare size and mtime. Returns units to look at."""
    rule_id = rule.id
    changed = 0
    batch: list[tuple[str, int, int]] = []

    def reconcile() -> int:
        known = ledger.lookup_many(rule_id, [rel for rel, _size, _mtime in batch])
        return sum(1 for rel, size, mtime in batch
                   if (row := known.get(rel)) is None or not row.same_stats(size, mtime))

    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = f"{prefix}/{entry.name}" if prefix else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if rule.accepts_dir(entry.name):
                        stack.append((entry.path, rel))
                    continue
                if not entry.is_file() or not rule.accepts_file(rel):
                    continue
                stat = entry.stat()
                batch.append((rel, stat.st_size, stat.st_mtime_ns))
                if len(batch) >= 500:
                    changed += reconcile()
                    batch = []
    changed += reconcile()
    return changed


def scan_now(ledger: Ledger, root: Path, rule: WatchRule, private: list[Path]) -> int:
    """The same work as the watcher's reconcile scan does it now (``RuleWorker._scan_files``
    and ``_reconcile`` without the quiet tracker): links refused, identity compared."""
    from app.ingest.scanner import walk_files

    changed = 0
    batch = []

    def reconcile() -> int:
        known = ledger.lookup_many(rule.id, [entry.rel_path for entry in batch])
        return sum(1 for e in batch if (row := known.get(e.rel_path)) is None
                   or not row.matches(e.size, e.mtime_ns, e.ino, e.ctime_ns))

    for entry in walk_files(root, rule, skip=private, on_link=lambda _rel, _why: None):
        batch.append(entry)
        if len(batch) >= 500:
            changed += reconcile()
            batch = []
    changed += reconcile()
    return changed


def compare_change_detection(service: BenchService, root: Path, rule: WatchRule,
                             rounds: int) -> dict[str, object]:
    """Both scans over the same unchanged folder, alternated; medians and their ratio."""
    import statistics

    ledger = Ledger(service.store)
    private = service.paths.private_dirs()
    before, now = [], []
    flagged = {"before": 0, "now": 0}
    for _round in range(rounds):
        started = time.perf_counter()
        flagged["before"] = scan_before_issue_14(ledger, root, rule)
        before.append(time.perf_counter() - started)
        started = time.perf_counter()
        flagged["now"] = scan_now(ledger, root, rule, private)
        now.append(time.perf_counter() - started)
    ratio = statistics.median(now) / statistics.median(before)
    return {
        "rounds": rounds,
        "scan_now_seconds_median": round(statistics.median(now), 3),
        "scan_now_seconds_all": [round(t, 3) for t in now],
        "baseline_scan_before_issue_14_seconds_median": round(statistics.median(before), 3),
        "baseline_scan_before_issue_14_seconds_all": [round(t, 3) for t in before],
        "ratio": round(ratio, 3),
        "goal_ratio": 1.5,
        "meets_goal": ratio <= 1.5,
        "units_flagged_for_a_look": flagged,  # 0 and 0: the folder is unchanged
    }


def child_startup(store_dir: str, folder: str, idle: float, rounds: int) -> None:
    """Runs in a fresh process: start-up time, peak RSS, idle CPU."""
    rss_before = peak_rss_mb()
    root = Path(folder)
    started = time.perf_counter()
    walked = 0
    for _dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(_dirpath, name))
            walked += 1
    bare_walk = time.perf_counter() - started

    scans: list[IngestEvent] = []
    first_scan = threading.Event()

    def on_event(event: IngestEvent) -> None:
        if event.kind == "scan_done":
            scans.append(event)
            first_scan.set()
        elif event.kind == "captured":
            print(f"unexpected capture: {event.rel_path}", file=sys.stderr)

    started = time.perf_counter()
    service = BenchService(store_dir)
    rule = WatchRule(id="big", path=folder, observer="native")
    component = IngestComponent(service, [rule])
    component.add_listener(on_event)
    component.start()
    first_scan.wait(600)
    startup = time.perf_counter() - started
    rss_after_start = peak_rss_mb()
    status = component.status()[0]

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    cpu0, wall0 = cpu(), time.perf_counter()
    time.sleep(idle)  # the measurement window: nothing happens, on purpose
    idle_cpu = (cpu() - cpu0) / (time.perf_counter() - wall0)

    before_scans = len(scans)
    cpu0, wall0 = cpu(), time.perf_counter()
    component.rescan()
    while len(scans) == before_scans:
        time.sleep(0.05)
    rescan_cpu = cpu() - cpu0
    rescan_wall = time.perf_counter() - wall0
    component.stop()
    change_detection = compare_change_detection(service, root, rule, rounds)
    service.close()
    print(json.dumps({
        "startup_seconds": round(startup, 3),
        "first_scan_seconds": status.last_scan_seconds,
        "waiting_after_scan": status.waiting,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_start_mb": round(rss_after_start, 1),
        "baseline_rss_before_watcher_mb": round(rss_before, 1),
        "baseline_bare_walk_seconds": round(bare_walk, 3),
        "files_walked": walked,
        "idle_cpu_percent_of_one_core": round(idle_cpu * 100, 3),
        "full_rescan_cpu_seconds": round(rescan_cpu, 3),
        "full_rescan_wall_seconds": round(rescan_wall, 3),
        "idle_plus_amortised_rescan_percent": round(
            (idle_cpu + rescan_cpu / DEFAULT_RESCAN) * 100, 3),
        "rescan_interval_seconds": DEFAULT_RESCAN,
        "change_detection": change_detection,
    }))


def bench_startup(workdir: Path, count: int, idle: float, populate: str,
                  rounds: int) -> dict[str, object]:
    folder = workdir / "big-in"
    store_dir = workdir / "big-store"
    started = time.perf_counter()
    make_big_folder(folder, count)
    rule = WatchRule(id="big", path=str(folder), observer="native")
    if populate == "capture":
        populate_by_capturing(store_dir, rule, count)
    else:
        populate_ledger(store_dir, folder, rule)
    setup = time.perf_counter() - started
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(store_dir), str(folder), str(idle),
         str(rounds)],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT / "bench")
    result = json.loads(output.stdout.strip().splitlines()[-1])
    result.update({
        "files": count,
        "populated_by": populate,
        "setup_seconds": round(setup, 1),
        "idle_window_seconds": idle,
        "meets_goals": {
            "startup_le_30s": result["startup_seconds"] <= 30,
            "peak_rss_le_300mb": result["peak_rss_mb"] <= 300,
            "idle_cpu_le_2pct": result["idle_plus_amortised_rescan_percent"] <= 2,
            "change_detection_le_1_5x": result["change_detection"]["meets_goal"],
        },
    })
    if output.stderr.strip():
        result["stderr_tail"] = output.stderr.strip().splitlines()[-5:]
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_startup(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--quiet", type=float, default=1.0)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--populate", choices=["ledger", "capture"], default="ledger",
                        help="how the big folder is marked captured (capture = real, slow)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="change detection: scans of each kind, alternated")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    workdir = bench_dir()
    try:
        result: dict[str, object] = {"benchmark": "ingest"}
        if not args.skip_latency:
            result["latency"] = bench_latency(workdir, args.files, args.quiet)
        if not args.skip_startup:
            result["big_folder"] = bench_startup(workdir, args.big, args.idle, args.populate,
                                                 args.rounds)
        emit(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
