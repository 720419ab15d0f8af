"""The desktop window over a large store: start-up, filtering, scrolling, and GUI stalls.

    python bench/bench_gui.py [--rows 1000000] [--store DIR] [--big-file-gib 2] [--live-index]
                              [--queued-files 1000] [--quick] [--only sync-stall]
                              [--trace-stalls MS]

Runs offscreen (QT_QPA_PLATFORM=offscreen). Populates a store with ``--rows`` value
datapoints (200 labels, 100 experiments, a year of timestamps) unless ``--store`` names a
populated data directory to reuse (its datapoints are not changed). Times:

* ``first_rows``: open the service, build and show the main window, until the first row's
  contents are in the model and painted (goal <= 1 s);
* ``label_filter``: type a label in the search box (debounce skipped) until the first
  matching rows are shown (goal <= 300 ms); the exact count follows in the background;
* ``jump_to_end``: scroll to the last row until its contents are painted (goal <= 200 ms),
  both before the background id order is loaded (reversed-sort page) and after;
* ``stall``: the longest gap between ticks of a 2 ms GUI timer (goal <= 100 ms) while a
  ``--big-file-gib`` file is captured through the capture dialog and the capture queue, and
  while the window's hosted sync engine uploads it to a real SeaweedFS + nx-27017 (started
  here); and while the capture queue panel shows ``--queued-files`` (1,000) files dropped as
  one folder, from the click on *Capture* until the last is captured (``queue``).
  ``longest_stall_not_run_queue_ms`` (Linux): the same gap less the time the GUI thread sat
  runnable waiting for a CPU the OS gave to other processes (a shared machine's noise);
  what remains is this program's own stall (its GUI work, or waiting for the GIL).
  ``gui_thread_cpu_s``: CPU time the GUI thread used meanwhile (less noisy than stalls).

``--quick``: 100,000 rows, a 0.25 GiB file, no sync run (a check, not the figures).
``--only sync-stall``: only the capture and sync stall run (no store, no queue).
``--trace-stalls MS``: print to stderr what the GUI thread (and the other threads) were
doing during each stall longer than MS ms, sampled every 5 ms from a helper thread.

Baselines in the same run: the same first page, count and tail page as hand-written SQL
on a plain sqlite3 connection. ``--live-index`` repeats the store measurements on a copy
with the partial index proposed for the core (``(data_timestamp, id) WHERE deleted = 0``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import bench_dir, emit, peak_rss_mb  # noqa: E402

from PySide6.QtCore import QEventLoop, QObject, QTimer  # noqa: E402

from app.core.models import OwnershipInfo, ValueDataPoint  # noqa: E402
from app.service import BenchService  # noqa: E402
from app.ui.application import HostedComponents, build_window, make_application  # noqa: E402

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
LIVE_INDEX = ("CREATE INDEX IF NOT EXISTS ix_datapoints_live_order ON datapoints "
              "(data_timestamp, id) WHERE deleted = 0")


def populate(service: BenchService, rows: int) -> float:
    rng = random.Random(7)
    start = time.perf_counter()
    experiments = [service.ownership(experiment=f"EXP{i}").experiment_id for i in range(100)]
    batch: list[ValueDataPoint] = []
    for i in range(rows):
        batch.append(ValueDataPoint(
            label=f"label-{i % 200}", value={"t": round(rng.uniform(0, 100), 3), "i": i},
            data_timestamp=EPOCH + timedelta(seconds=rng.randrange(365 * 86400)),
            ownership_info=OwnershipInfo(experiment_id=experiments[i % 100]),
            custom_metadata={"experiment_name": f"EXP{i % 100}"}))
        if len(batch) == 10_000:
            service.store.insert(batch)
            batch = []
    if batch:
        service.store.insert(batch)
    return time.perf_counter() - start


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> float:
    """Run the Qt event loop until ``condition`` holds; return the seconds it took."""
    start = time.perf_counter()
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(1)

    def check() -> None:
        if condition() or time.perf_counter() - start > timeout:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise TimeoutError(f"condition not met within {timeout} s")
    return time.perf_counter() - start


class StallTracer:
    """Samples every thread's Python stack every ``period`` s from a helper thread, so a
    GUI stall can be explained afterwards: which frames the GUI thread sat in, and whether
    the sampler itself was held off (then some thread held the GIL in C code)."""

    def __init__(self, threshold_ms: float, period: float = 0.005) -> None:
        import threading

        self.threshold = threshold_ms / 1000
        self.period = period
        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, float, dict[int, list[str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-tracer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import threading

        names = {}
        last = time.perf_counter()
        while not self._stop.wait(self.period):
            now = time.perf_counter()
            frames = sys._current_frames()
            names.update({t.ident: t.name for t in threading.enumerate()})
            stacks = {ident: [f"{names.get(ident, ident)}"] + outermost_last(frame)
                      for ident, frame in frames.items() if ident != threading.get_ident()}
            self.samples.append((now, now - last, stacks))
            last = now
            if len(self.samples) > 4000:
                del self.samples[:2000]

    def report(self, start: float, end: float) -> None:
        """Print what was sampled between ``start`` and ``end`` (a stall)."""
        print(f"--- stall {1000 * (end - start):.1f} ms", file=sys.stderr)
        for t, late, stacks in self.samples:
            if start - self.period <= t <= end + self.period:
                print(f"  +{1000 * (t - start):7.1f} ms (sampler waited "
                      f"{1000 * late:.1f} ms)", file=sys.stderr)
                for ident, stack in stacks.items():
                    top = stack[-1].split()[-1]
                    if ident == self.main or not (top in IDLE_FRAMES or "wait" in top):
                        print("     " + " < ".join(reversed(stack)), file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def outermost_last(frame: Any, depth: int = 6) -> list[str]:
    """The innermost ``depth`` frames of a stack, outermost first (no source lines read)."""
    found: list[str] = []
    while frame is not None and len(found) < depth:
        found.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} "
                     f"{frame.f_code.co_name}")
        frame = frame.f_back
    return found[::-1]


TRACER: Optional[StallTracer] = None
IDLE_FRAMES = {"acquire", "select", "poll", "get", "_recv_into", "readinto", "accept"}


class StallMonitor(QObject):
    """The longest gap between ticks of a fast GUI-thread timer."""

    def __init__(self, interval_ms: int = 2) -> None:
        super().__init__()
        self.interval = interval_ms / 1000
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.max_gap = 0.0
        self.max_own_gap = 0.0
        self.queued = 0.0
        self.ticks = 0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.queued = run_queue_ms()
        self.cpu = time.thread_time()  # start() and stop() run on the GUI thread
        self.max_gap = 0.0
        self.max_own_gap = 0.0
        self.ticks = 0
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        queued = run_queue_ms()
        self.max_gap = max(self.max_gap, now - self.last)
        # The part of the gap this thread was runnable but the OS ran other work (other
        # processes on a shared machine) is not this program's stall.
        self.max_own_gap = max(self.max_own_gap,
                               now - self.last - (queued - self.queued) / 1000)
        self.queued = queued
        if TRACER is not None and now - self.last > TRACER.threshold:
            QTimer.singleShot(50, lambda start=self.last, end=now: TRACER.report(start, end))
        self.last = now
        self.ticks += 1

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        out = {"longest_stall_ms": round(max(0.0, self.max_gap - self.interval) * 1000, 1),
               "ticks": self.ticks,
               "gui_thread_cpu_s": round(time.thread_time() - self.cpu, 2)}
        if self.queued >= 0:
            out["longest_stall_not_run_queue_ms"] = round(
                max(0.0, self.max_own_gap - self.interval) * 1000, 1)
        return out


def run_queue_ms() -> float:
    """How long this thread has waited, runnable, for a CPU (Linux schedstat); -1 elsewhere."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return -1.0


def painted(window: Any) -> None:
    window.table.viewport().repaint()


def measure_store(data_dir: Path) -> dict[str, Any]:
    """Start-up, filter and jump timings over one (large) data directory."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    service = BenchService(data_dir)
    out["service_open_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    window = build_window(service)
    window.resize(1280, 800)
    window.show()
    model = window.model
    wait_until(lambda: model.rowCount() > 0 and model.summary(0) is not None)
    painted(window)
    out["first_rows_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["rows"] = model.rowCount()
    wait_until(lambda: model.count_exact)
    out["count_known_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["rows"] = model.rowCount()

    # Jump to the end before the full order is loaded (answered by a reversed-sort page).
    if not model.order_complete:
        last = model.rowCount() - 1
        t1 = time.perf_counter()
        window.table.scrollToBottom()
        wait_until(lambda: model.summary(last) is not None)
        painted(window)
        out["jump_to_end_before_order_ms"] = round((time.perf_counter() - t1) * 1000, 1)
    wait_until(lambda: model.order_complete, timeout=300)
    out["order_loaded_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    window.table.scrollToTop()
    wait_until(lambda: model.summary(0) is not None)
    last = model.rowCount() - 1
    t1 = time.perf_counter()
    window.table.scrollToBottom()
    wait_until(lambda: model.summary(last) is not None)
    painted(window)
    out["jump_to_end_ms"] = round((time.perf_counter() - t1) * 1000, 1)
    middle = model.rowCount() // 2
    t1 = time.perf_counter()
    window.table.scrollTo(model.index(middle, 0))
    wait_until(lambda: model.summary(middle) is not None)
    painted(window)
    out["jump_to_middle_ms"] = round((time.perf_counter() - t1) * 1000, 1)

    filters: list[float] = []
    counts: list[float] = []
    shown = {"n": 0}
    model.first_rows_shown.connect(lambda _n: shown.__setitem__("n", shown["n"] + 1))
    for k in (17, 42, 99, 123, 188):
        window.filter_bar.search.setText(f"label-{k}")
        before = shown["n"]
        t1 = time.perf_counter()
        window.filter_bar.apply()
        wait_until(lambda: shown["n"] > before and (model.rowCount() == 0 or
                                                     model.summary(0) is not None))
        painted(window)
        filters.append(time.perf_counter() - t1)
        wait_until(lambda: model.count_exact, timeout=300)
        counts.append(time.perf_counter() - t1)
        wait_until(lambda: not model.loading, timeout=300)
    out["label_filter_ms"] = {"p50": round(sorted(filters)[2] * 1000, 1),
                              "max": round(max(filters) * 1000, 1)}
    out["label_filter_count_ms"] = {"p50": round(sorted(counts)[2] * 1000, 1),
                                    "max": round(max(counts) * 1000, 1)}
    out["label_filter_matches"] = model.rowCount()
    window.close()
    window.context.tasks.shutdown()
    service.close()
    out["baseline_sql_ms"] = sql_baseline(data_dir / "store.sqlite3")
    return out


def sql_baseline(db: Path) -> dict[str, float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cases = {
        "first_page": "SELECT * FROM datapoints WHERE deleted = 0 ORDER BY data_timestamp DESC, "
                      "id DESC LIMIT 200",
        "count": "SELECT COUNT(*) FROM datapoints WHERE deleted = 0",
        "tail_page": "SELECT * FROM datapoints WHERE deleted = 0 ORDER BY data_timestamp ASC, "
                     "id ASC LIMIT 200",
        "label_first_page": "SELECT * FROM datapoints WHERE deleted = 0 AND label LIKE "
                            "'%label-17%' ORDER BY data_timestamp DESC, id DESC LIMIT 200",
        "all_rowids_in_order": "SELECT rowid FROM datapoints WHERE deleted = 0 ORDER BY "
                               "data_timestamp DESC, id DESC",
    }
    out = {}
    for name, sql in cases.items():
        t0 = time.perf_counter()
        conn.execute(sql).fetchall()
        out[name] = round((time.perf_counter() - t0) * 1000, 1)
    conn.close()
    return out


def make_big_file(path: Path, gib: float) -> None:
    block = os.urandom(16 * 1024 * 1024)
    remaining = int(gib * 1024 ** 3)
    with open(path, "wb") as out:
        while remaining > 0:
            out.write(block[:min(len(block), remaining)])
            remaining -= len(block)


def measure_stalls(work: Path, gib: float, with_sync: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"file_gib": gib}
    big = work / "big-instrument-file.bin"
    make_big_file(big, gib)
    service = BenchService(work / "small-store")
    service.submit_many([ValueDataPoint(label=f"v{i}", value=i) for i in range(1000)])
    hosted = HostedComponents(service, api=False, watch=False)
    hosted.start()
    window = build_window(service, hosted)
    window.resize(1280, 800)
    window.show()
    wait_until(lambda: not window.model.loading)
    monitor = StallMonitor()

    dialog = window.capture_files([big])
    wait_until(dialog.capture_button.isEnabled)
    done: dict[str, Any] = {}
    window.capture_panel.finished.connect(lambda summary: done.setdefault("summary", summary))
    monitor.start()
    t0 = time.perf_counter()
    dialog.start_capture()
    wait_until(lambda: "summary" in done, timeout=1800)
    assert done["summary"].done == 1, done["summary"]
    seconds = time.perf_counter() - t0
    out["capture"] = {**monitor.stop(), "seconds": round(seconds, 2),
                      "MiB_per_s": round(gib * 1024 / seconds, 1)}
    servers: list[Any] = []
    if with_sync:
        out["sync"] = sync_stalls(work, service, window, monitor, gib, servers)
    window.close()
    window.context.tasks.shutdown()
    hosted.stop()
    service.close()
    for server in servers:
        server.stop()
    return out


def queue_stalls(work: Path, files: int) -> dict[str, Any]:
    """The longest stall while the capture queue panel lists ``files`` dropped files (one
    folder of 64 KiB files) and captures them one by one; baseline: the same files captured
    by ``service.submit`` in a loop without the window."""
    folder = work / "plate"
    folder.mkdir()
    payload = os.urandom(64 * 1024)
    for i in range(files):
        (folder / f"well-{i:04d}.bin").write_bytes(payload[:-8] + i.to_bytes(8, "big"))
    out: dict[str, Any] = {"files": files}
    with BenchService(work / "queue-baseline") as baseline:
        t0 = time.perf_counter()
        for path in sorted(folder.iterdir()):
            baseline.capture_file(path)
        out["baseline_submit_loop_s"] = round(time.perf_counter() - t0, 2)
    service = BenchService(work / "queue-store")
    service.submit_many([ValueDataPoint(label=f"v{i}", value=i) for i in range(1000)])
    window = build_window(service)
    window.resize(1280, 800)
    window.show()
    wait_until(lambda: not window.model.loading)
    dialog = window.capture_files([folder])
    wait_until(dialog.capture_button.isEnabled, timeout=300)
    done: dict[str, Any] = {}
    window.capture_panel.finished.connect(lambda summary: done.setdefault("summary", summary))
    monitor = StallMonitor()
    # Baseline: the same window doing nothing for a while (this machine's own jitter).
    monitor.start()
    quiet_until = time.perf_counter() + 3
    wait_until(lambda: time.perf_counter() >= quiet_until)
    out["idle_baseline"] = monitor.stop()
    monitor.start()
    t0 = time.perf_counter()
    dialog.start_capture()
    out["panel_shows_all_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["rows_in_panel"] = window.capture_panel.model.rowCount()
    wait_until(lambda: "summary" in done, timeout=1800)
    seconds = time.perf_counter() - t0
    out.update(monitor.stop())
    out["seconds"] = round(seconds, 2)
    out["captured"] = done["summary"].done
    window.close()
    window.context.tasks.shutdown()
    service.close()
    return out


def sync_stalls(work: Path, service: BenchService, window: Any, monitor: StallMonitor,
                gib: float, servers: list[Any]) -> dict[str, Any]:
    from tests.support.servers import MongoServer, SeaweedServer, central_settings

    from sync.settings import save_settings

    weed = SeaweedServer(work / "weed")
    mongo = MongoServer(work / "nx")
    weed.start()
    servers.append(weed)
    mongo.start()
    servers.append(mongo)
    settings = central_settings(weed, mongo, weed.make_bucket(), "madsci_data")
    save_settings(service.paths, settings)
    monitor.start()
    t0 = time.perf_counter()
    window.restart_sync()  # what saving the Settings dialog does
    saw_upload = {"yes": False}

    def synced() -> bool:
        snapshot = window.sync_snapshot
        if snapshot is not None and snapshot.uploading:
            saw_upload["yes"] = True
        return bool(snapshot and snapshot.engine_running and snapshot.backlog_count == 0
                    and service.store.sync_state_counts().get("pending", 0) == 0)

    refresher = QTimer()
    refresher.setInterval(250)
    refresher.timeout.connect(window.refresh_sync)
    refresher.start()
    wait_until(synced, timeout=1800)
    refresher.stop()
    seconds = time.perf_counter() - t0
    return {**monitor.stop(), "seconds": round(seconds, 2),
            "MiB_per_s": round(gib * 1024 / seconds, 1), "datapoints": 1001,
            "upload_progress_seen": saw_upload["yes"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, help="A populated data directory to reuse.")
    parser.add_argument("--big-file-gib", type=float, default=2.0)
    parser.add_argument("--no-sync", action="store_true", help="Skip the sync stall run.")
    parser.add_argument("--live-index", action="store_true",
                        help="Also measure with the partial index proposed for the core.")
    parser.add_argument("--queued-files", type=int, default=1000,
                        help="Files in the capture queue for its stall run (0 skips it).")
    parser.add_argument("--quick", action="store_true",
                        help="100,000 rows, a 0.25 GiB file, no sync run.")
    parser.add_argument("--only", choices=["sync-stall"],
                        help="sync-stall: only the capture and sync stall run.")
    parser.add_argument("--trace-stalls", type=float, metavar="MS",
                        help="Print the threads' stacks during stalls longer than MS ms.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.big_file_gib, args.no_sync = 100_000, 0.25, True
    if args.only == "sync-stall":
        args.rows, args.store, args.queued_files, args.no_sync = 0, None, 0, False
        args.live_index = False
    if args.trace_stalls:
        global TRACER
        TRACER = StallTracer(args.trace_stalls)
    app = make_application([])
    assert app is not None
    work = bench_dir()
    result: dict[str, Any] = {"benchmark": "gui", "platform": os.environ["QT_QPA_PLATFORM"]}
    try:
        store = args.store
        if store is None and args.rows > 0:
            store = work / "big"
            with BenchService(store) as service:
                result["populate_s"] = round(populate(service, args.rows), 1)
        if store is not None:
            result["store"] = measure_store(store)
        if args.live_index and store is not None:
            copy = work / "indexed"
            copy.mkdir()
            shutil.copy2(store / "store.sqlite3", copy / "store.sqlite3")
            conn = sqlite3.connect(copy / "store.sqlite3")
            conn.execute(LIVE_INDEX)
            conn.close()
            result["store_with_live_index"] = measure_store(copy)
        if args.big_file_gib > 0:
            result["stalls"] = measure_stalls(work, args.big_file_gib, not args.no_sync)
        if args.queued_files > 0:
            result.setdefault("stalls", {})["queue"] = queue_stalls(work, args.queued_files)
        result["goals"] = {"first_rows_ms": 1000, "label_filter_ms": 300,
                           "jump_to_end_ms": 200, "longest_stall_ms": 100}
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
