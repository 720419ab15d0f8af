"""The service's rotating, redacted log file and ``benchdata logs``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.admin.logs import follow, log_file, redact, setup_logging, tail, teardown_logging
from app.cli import cli
from app.core.paths import bench_paths


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    teardown_logging()
    root.setLevel(level)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)


def test_rotates_at_the_size_limit(tmp_path: Path, restore_root_logger: None) -> None:
    paths = bench_paths(tmp_path / "store")
    setup_logging(paths, "INFO", console=False, max_bytes=2000, backup_count=2)
    log = logging.getLogger("test.rotation")
    for number in range(200):
        log.info("line %04d %s", number, "x" * 40)
    teardown_logging()
    current = log_file(paths)
    rotated = sorted(paths.log_dir.glob("benchdata.log.*"))
    assert [p.name for p in rotated] == ["benchdata.log.1", "benchdata.log.2"]
    for path in (current, *rotated):
        assert path.stat().st_size <= 2000
    assert "line 0199" in current.read_text(encoding="utf-8")
    assert tail(current, 1)[0].endswith("line 0199 " + "x" * 40)


def test_secrets_never_reach_the_file(tmp_path: Path, restore_root_logger: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECT_STORAGE_SECRET_KEY", "env-s3cret-value")
    paths = bench_paths(tmp_path / "store")
    setup_logging(paths, "DEBUG", console=False)
    log = logging.getLogger("test.secrets")
    log.info("connecting to %s", "mongodb://madsci:hunter2pass@db.lab:27017/madsci_data")
    log.info("settings: password=topsecret1 api_token: 'tok-123456' other=visible")
    log.warning("config %s", {"secret_key": "dict-secret-9", "bucket": "raw"})
    log.info("the env secret leaked: %s", "env-s3cret-value")
    try:
        raise RuntimeError("auth failed for mongodb://u:exc-pass-77@h/")
    except RuntimeError:
        log.exception("sync failed")
    teardown_logging()
    text = log_file(paths).read_text(encoding="utf-8")
    for secret in ("hunter2pass", "topsecret1", "tok-123456", "dict-secret-9",
                   "env-s3cret-value", "exc-pass-77"):
        assert secret not in text
    assert "mongodb://madsci:***@db.lab:27017/madsci_data" in text
    assert "other=visible" in text and "'bucket': 'raw'" in text


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "captured run.txt (12 KiB) into http://127.0.0.1:8004/datapoint"
    assert redact(text, []) == text


def test_logs_command_prints_the_tail(tmp_path: Path) -> None:
    paths = bench_paths(tmp_path / "store")
    paths.log_dir.mkdir(parents=True)
    log_file(paths).write_text("".join(f"line {n}\n" for n in range(100)), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["--data-dir", str(paths.data_dir), "logs", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["line 97", "line 98", "line 99"]
    result = runner.invoke(cli, ["--data-dir", str(paths.data_dir), "logs", "--path"])
    assert result.output.strip() == str(log_file(paths))


def test_follow_yields_appended_lines_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "benchdata.log"
    path.write_text("old\n", encoding="utf-8")
    stop, seen = threading.Event(), []

    def reader() -> None:
        for line in follow(path, poll_s=0.02, stop=stop):
            seen.append(line)
            if line == "after rotation":
                stop.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "new" not in seen and time.monotonic() < deadline:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("new\n")
            thread.join(0.05)
        path.rename(tmp_path / "benchdata.log.1")
        path.write_text("after rotation\n", encoding="utf-8")
        thread.join(10)
    finally:
        stop.set()
        thread.join(10)
    assert "old" not in seen and "new" in seen and seen[-1] == "after rotation"


def test_logs_window_option_prints_the_windows_log(tmp_path: Path) -> None:
    from app.admin.logs import WINDOW_LOG_NAME

    paths = bench_paths(tmp_path / "store")
    paths.log_dir.mkdir(parents=True)
    log_file(paths, WINDOW_LOG_NAME).write_text("window line\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--data-dir", str(paths.data_dir), "logs", "--window"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["window line"]


def test_default_layout_logs_to_the_platform_log_directory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("BENCHDATA_HOME", raising=False)
    assert bench_paths().log_dir == Path(platformdirs.user_log_dir("BenchData", appauthor=False))
    assert bench_paths("/some/store").log_dir == Path("/some/store").resolve() / "logs"
