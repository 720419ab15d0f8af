"""``/value`` serves only bytes this bench captured, fetched or verified for that datapoint
(issue #14, defect 10), and says why when it cannot serve a file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx

from app.client import DataClient
from app.core import custody
from app.core.errors import FileNotReachableError
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]


def _post(http: httpx.Client, document: dict[str, object]) -> httpx.Response:
    return http.post("datapoint", data={"datapoint": json.dumps(document)})


def test_a_posted_record_naming_a_blobs_sha256_is_not_served_that_blob(
        http: httpx.Client, service: BenchService, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the bench's private bytes")
    captured = service.capture_file(secret, label="private")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert http.get(f"datapoint/{captured.datapoint_id}/value").content == secret.read_bytes()

    posted = _post(http, {"data_type": "object_storage", "label": "claims a digest",
                          "path": "x", "storage_endpoint": "s3.example:9000",
                          "bucket_name": "b", "object_name": "o", "sha256": digest,
                          "size_bytes": secret.stat().st_size})
    assert posted.status_code == 200, posted.text
    ident = posted.json()["_id"]

    answer = http.get(f"datapoint/{ident}/value")
    assert answer.status_code == 404
    assert b"private bytes" not in answer.content
    assert "not on this bench" in answer.json()["detail"]
    assert custody.custody_of(service.store, ident) is None
    with DataClient(service=service) as client:
        try:
            client.get_datapoint_value(ident)
        except FileNotReachableError as exc:
            assert "benchdata sync configure" in str(exc)
        else:
            raise AssertionError("the blob was served to a record that only named its digest")


def test_captures_record_custody_in_the_same_transaction(service: BenchService,
                                                         tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc")
    captured = service.capture_file(source)
    record = custody.custody_of(service.store, captured.datapoint_id)
    assert record is not None and record.how == "captured"
    assert record.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert custody.custody_of(service.store, service.capture_value(1).datapoint_id) is None


def test_custody_is_backfilled_for_files_captured_before_it_existed(tmp_path: Path) -> None:
    source = tmp_path / "old.bin"
    source.write_bytes(b"captured by an older version")
    with BenchService(tmp_path / "bench") as bench:
        captured = bench.capture_file(source)
        with bench.store.transaction() as conn:  # as an older version left the store
            for table in ("blob_custody", "central_custody", "scrub_marks", "scrub_runs"):
                conn.execute(f"DROP TABLE {table}")
            for trigger in ("blob_custody_captured", "blob_custody_changed",
                            "blob_custody_row_removed", "central_custody_changed",
                            "central_custody_row_removed"):  # on datapoints: drop them too
                conn.execute(f"DROP TRIGGER {trigger}")
            conn.execute("DELETE FROM component_versions WHERE component = 'custody'")
    with BenchService(tmp_path / "bench") as bench:
        assert bench.value(captured.datapoint_id) == b"captured by an older version"


def test_a_pulled_edit_naming_other_bytes_drops_custody(service: BenchService,
                                                        tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc")
    captured = service.capture_file(source)
    with service.store.transaction() as conn:  # what a pull applying a forged record does
        conn.execute("UPDATE datapoints SET sha256 = ? WHERE id = ?",
                     ("0" * 64, captured.datapoint_id))
    assert custody.custody_of(service.store, captured.datapoint_id) is None


def test_cli_says_in_one_sentence_why_a_file_is_not_reachable(service: BenchService,
                                                               tmp_path: Path) -> None:
    from app.core.models import ObjectStorageDataPoint

    dp = service.submit(ObjectStorageDataPoint(path="x", storage_endpoint="s3:9000",
                                               bucket_name="b", object_name="o"))
    done = subprocess.run([sys.executable, "-c", "from app.cli import main; main()",
                           "--data-dir", str(tmp_path / "bench"), "value", dp.datapoint_id],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the file of datapoint")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
