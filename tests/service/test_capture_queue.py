"""The capture queue without a window: order, cancel, retry and the run's summary, over a
real service and real files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.capture_queue import (
    CaptureQueue,
    CaptureRequest,
    ItemState,
    QueueSummary,
    requests_for,
    service_capture,
)
from app.service import BenchService

MiB = 1024 * 1024


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "store") as bench:
        yield bench


@pytest.fixture
def queue(service: BenchService) -> Iterator[CaptureQueue]:
    captures = CaptureQueue(service_capture(service))
    yield captures
    assert captures.close(timeout=30)


def idle(queue: CaptureQueue) -> threading.Event:
    """Set once nothing is queued or capturing any more (checked on every change)."""
    event = threading.Event()

    def check() -> None:
        if not queue.active():
            event.set()

    queue.subscribe(check)
    check()
    return event


def request(path: Path, text: str = "x", **names: str) -> CaptureRequest:
    path.write_text(text, encoding="utf-8")
    return CaptureRequest(path=path, size=path.stat().st_size, label=path.name, names=names)


def test_files_are_captured_in_order_with_their_names(tmp_path: Path, service: BenchService,
                                                      queue: CaptureQueue) -> None:
    requests = [request(tmp_path / f"run-{i}.csv", f"t\n{i}\n", experiment="EXP42")
                for i in range(3)]
    keys = queue.add(requests)
    done = idle(queue)
    assert done.wait(30)
    items = [queue.item(k) for k in keys]
    assert [i.state for i in items] == [ItemState.DONE] * 3
    captured = [service.get(i.datapoint_id) for i in items]
    assert [dp.filename for dp in captured] == ["run-0.csv", "run-1.csv", "run-2.csv"]
    assert captured[0].custom_metadata["experiment_name"] == "EXP42"
    assert captured[0].data_timestamp <= captured[2].data_timestamp
    assert queue.summary() == QueueSummary(total=3, done=3)
    assert queue.summary().headline() == "Captured 3 of 3"


def test_a_summary_while_capturing_counts_the_bytes_left() -> None:
    summary = QueueSummary(total=40, done=2, failed=1, waiting=37,
                           bytes_left=int(1.2 * 1024 ** 3))
    assert summary.headline() == "Capturing 4 of 40 · 1.2 GiB left"


def test_cancelled_and_failed_items_keep_nothing_and_can_be_retried(
        tmp_path: Path, service: BenchService, queue: CaptureQueue) -> None:
    held = threading.Event()
    go = threading.Event()

    def hold_first_copy() -> None:  # keeps the worker inside the first file's copy
        first = queue.items()[0]
        if threading.current_thread().name == "capture-queue" and \
                first.state == ItemState.CAPTURING and first.done_bytes and not held.is_set():
            held.set()
            go.wait(30)

    queue.subscribe(hold_first_copy)
    big = tmp_path / "big.raw"
    with open(big, "wb") as out:
        out.truncate(100 * MiB)  # sparse: a progress report at 64 MiB, then the end
    missing = tmp_path / "missing.txt"
    keys = queue.add([CaptureRequest(path=big, size=100 * MiB, label="big"),
                      CaptureRequest(path=missing, size=5, label="missing"),
                      request(tmp_path / "skipped.txt")])
    assert held.wait(30)
    queue.cancel(keys[0])  # in flight
    queue.cancel(keys[2])  # still queued: skipped at once
    assert queue.item(keys[0]).describe_state() == "cancelling…"
    assert queue.item(keys[2]).state == ItemState.CANCELLED
    go.set()
    assert idle(queue).wait(30)
    assert [queue.item(k).state for k in keys] == [ItemState.CANCELLED, ItemState.FAILED,
                                                   ItemState.CANCELLED]
    assert "missing.txt" in queue.item(keys[1]).describe_state()
    assert service.count() == 0
    assert list(service.files.tmp_dir.glob("*.part")) == []
    assert [p for p in service.files.blobs_dir.rglob("*") if p.is_file()] == []
    assert queue.summary().headline() == "Captured 0 of 3 · 1 failed · 2 cancelled"

    missing.write_text("found", encoding="utf-8")
    assert queue.retry(keys[1]) and queue.retry(keys[2])
    assert not queue.retry(keys[1])  # already queued again
    assert idle(queue).wait(30)
    assert [queue.item(k).state for k in keys[1:]] == [ItemState.DONE, ItemState.DONE]
    assert service.count() == 2
    # A new run: only the retried items count.
    assert queue.summary().headline() == "Captured 2 of 2"


def test_close_cancels_what_waits(tmp_path: Path, service: BenchService) -> None:
    queue = CaptureQueue(service_capture(service))
    started = threading.Event()
    release = threading.Event()

    def block_first() -> None:
        if threading.current_thread().name == "capture-queue" and not started.is_set():
            started.set()
            release.wait(30)

    queue.subscribe(block_first)
    keys = queue.add([request(tmp_path / "a.txt"), request(tmp_path / "b.txt")])
    cancelling = threading.Event()
    queue.subscribe(lambda: queue.item(keys[0]).cancelling and cancelling.set())
    assert started.wait(30)  # the worker holds the first item, before copying it
    closer = threading.Thread(target=queue.close, kwargs={"timeout": 30})
    closer.start()
    assert cancelling.wait(30)
    release.set()
    closer.join(30)
    assert [queue.item(k).state for k in keys] == [ItemState.CANCELLED] * 2
    assert service.count() == 0
    with pytest.raises(RuntimeError):
        queue.add([request(tmp_path / "c.txt")])


def test_requests_keep_a_dropped_folders_relative_path(tmp_path: Path) -> None:
    made = requests_for([(tmp_path / "b.txt", 2, "plate/sub/b.txt"), (tmp_path / "c.txt", 1, None)],
                        label="", names={"user": "alice"}, metadata={"k": "v"},
                        relative_key="relative_path")
    assert [r.label for r in made] == ["plate/sub/b.txt", "c.txt"]
    assert made[0].metadata == {"k": "v", "relative_path": "plate/sub/b.txt"}
    assert made[1].metadata == {"k": "v"}
