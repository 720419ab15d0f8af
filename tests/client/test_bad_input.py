"""Bad input gets a clear error, and nothing is stored or harmed."""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path

import pytest

from app import DataClient, FileDataPoint, ValueDataPoint
from app.core.errors import (
    CaptureError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceUnreadableError,
    ValueNotJSONError,
    ValueTooLargeError,
)


@pytest.fixture
def seeded(client: DataClient, run_txt: Path) -> DataClient:
    """A store that already holds a value and a file, to check nothing is harmed."""
    client.submit_datapoint(ValueDataPoint(label="keep", value={"a": 1}))
    client.submit_datapoint(FileDataPoint(label="keep-file", path=str(run_txt)))
    return client


def _store_is_intact(client: DataClient, run_txt: Path) -> None:
    assert client.count_datapoints() == 2
    file_dp = next(iter(client.query_datapoints({"label": "keep-file"}).values()))
    assert client.get_datapoint_value(file_dp.datapoint_id) == run_txt.read_bytes()
    assert client.service.files.verify(file_dp.sha256)
    assert client.service.store.integrity_check() == "ok"
    leftovers = list((client.service.paths.files / "tmp").glob("*"))
    assert leftovers == []
    blobs = [p for p in (client.service.paths.files / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "nan"),
        ({"t": math.inf}, "value.t is inf"),
        ([1, -math.inf], r"value\[1\] is -inf"),
        (b"\x00\x01", "bytes, which is not JSON; store binary data as a file"),
        ({1, 2}, "set, which is not JSON; convert it to a list"),
        ({1: "a"}, "key 1 of type int"),
        (datetime(2026, 1, 1), "datetime, which is not JSON"),
        (object(), "object, which is not JSON"),
    ],
)
def test_values_that_are_not_json_are_refused(seeded: DataClient, run_txt: Path, value: object,
                                              message: str) -> None:
    with pytest.raises(ValueNotJSONError, match=message):
        seeded.submit_datapoint(ValueDataPoint(value=value))
    _store_is_intact(seeded, run_txt)


def test_deeply_nested_value_is_refused(seeded: DataClient, run_txt: Path) -> None:
    value: object = 1
    for _ in range(120):
        value = [value]
    with pytest.raises(ValueNotJSONError, match="nested deeper"):
        seeded.submit_datapoint(ValueDataPoint(value=value))
    _store_is_intact(seeded, run_txt)


def test_value_too_large_for_mongodb_is_refused(seeded: DataClient, run_txt: Path) -> None:
    with pytest.raises(ValueTooLargeError, match="store it as a file datapoint instead"):
        seeded.submit_datapoint(ValueDataPoint(value="x" * (16 * 1024 * 1024)))
    _store_is_intact(seeded, run_txt)
    # A large value that does fit is fine.
    big = seeded.submit_datapoint(ValueDataPoint(value="y" * (4 * 1024 * 1024)))
    assert len(seeded.get_datapoint_value(big.datapoint_id)) == 4 * 1024 * 1024


def test_missing_file(seeded: DataClient, run_txt: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceMissingError, match="nope.csv"):
        seeded.submit_datapoint(FileDataPoint(path=str(tmp_path / "nope.csv")))
    _store_is_intact(seeded, run_txt)


def test_directory_passed_as_file(seeded: DataClient, run_txt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "a folder"
    folder.mkdir()
    with pytest.raises(SourceIsDirectoryError):
        seeded.submit_datapoint(FileDataPoint(path=str(folder)))
    _store_is_intact(seeded, run_txt)


def test_unreadable_file(seeded: DataClient, run_txt: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"locked")
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads here")
        with pytest.raises(SourceUnreadableError, match="secret.bin"):
            seeded.submit_datapoint(FileDataPoint(path=str(secret)))
    finally:
        secret.chmod(0o600)
    _store_is_intact(seeded, run_txt)


def test_odd_filenames_are_captured(client: DataClient, tmp_path: Path) -> None:
    names = ["spaces and (parens).csv", "ünïcødé µL.txt", "emoji 🧪.dat", "semi;colon'quote\".bin",
             "-leading-dash", "..dots..", "new\nline.txt"]
    for name in names:
        path = tmp_path / name
        path.write_bytes(name.encode())
        stored = client.submit_datapoint(FileDataPoint(path=str(path)))
        assert stored.filename == name
        assert client.get_datapoint_value(stored.datapoint_id) == name.encode()
    assert client.count_datapoints() == len(names)


def test_failed_file_in_a_batch_leaves_no_blob(client: DataClient, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("good")
    with pytest.raises(CaptureError):
        client.submit_datapoints([FileDataPoint(path=str(good)), FileDataPoint(path=str(tmp_path / "gone"))])
    assert client.count_datapoints() == 0
    assert [p for p in (client.service.paths.files / "blobs").rglob("*") if p.is_file()] == []


def test_a_failing_capture_never_removes_a_blob_another_capture_holds(client: DataClient,
                                                                      tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_bytes(b"identical content")
    # Capture B (e.g. an upload) has stored this content and not yet committed its row.
    in_flight = client.service.files.put_bytes(b"identical content", hold=True)
    # Capture A of the same content fails later in its batch and cleans up after itself.
    with pytest.raises(SourceMissingError):
        client.submit_datapoints([FileDataPoint(path=str(same)), FileDataPoint(path=str(tmp_path / "gone"))])
    assert client.service.files.exists(in_flight.sha256)  # B's blob survived
    client.service.settle_blobs([in_flight.sha256], committed=False)  # B fails too
    assert not client.service.files.exists(in_flight.sha256)


def test_disk_full_while_capturing(seeded: DataClient, run_txt: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from app.core.filestore import streamcopy
    from app.core.errors import DiskFullError

    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    written = {"bytes": 0}
    real_write = streamcopy._write_chunk

    def fill_up(fd: int, data: memoryview) -> None:
        if written["bytes"] + len(data) > 1024 * 1024:  # the disk holds 1 MiB more
            raise OSError(errno.ENOSPC, "No space left on device")
        written["bytes"] += len(data)
        real_write(fd, data)

    monkeypatch.setattr(streamcopy, "_write_chunk", fill_up)
    with pytest.raises(DiskFullError, match="full"):
        seeded.submit_datapoint(FileDataPoint(path=str(big)))
    monkeypatch.setattr(streamcopy, "_write_chunk", real_write)
    _store_is_intact(seeded, run_txt)


def test_file_that_changes_while_copied(seeded: DataClient, run_txt: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.filestore import streamcopy
    from app.core.errors import SourceChangedError

    growing = tmp_path / "growing.csv"
    growing.write_bytes(b"a,b\n" * 500_000)
    real_write = streamcopy._write_chunk

    def instrument_appends(fd: int, data: memoryview) -> None:
        real_write(fd, data)
        with growing.open("ab") as handle:  # the instrument is still writing
            handle.write(b"1,2\n")

    monkeypatch.setattr(streamcopy, "_write_chunk", instrument_appends)
    with pytest.raises(SourceChangedError, match="growing.csv"):
        seeded.submit_datapoint(FileDataPoint(path=str(growing)))
    monkeypatch.setattr(streamcopy, "_write_chunk", real_write)
    _store_is_intact(seeded, run_txt)
