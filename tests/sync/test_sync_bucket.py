"""A bucket that does not exist: created when the key may, else a sentence naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from app.service import BenchService
from tests.support.servers import SeaweedServer, central_settings
from sync.engine import SyncEngine

LIMITED_KEY = "benchlimited"


class _TwoKeySeaweed(SeaweedServer):
    """SeaweedFS with the admin identity plus a key that may read and write but not
    administer (SeaweedFS needs ``Admin`` to create a bucket)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.limited_secret = "limited-" + self.secret_key
        config = json.loads((self.workdir / "s3.json").read_text(encoding="utf-8"))
        config["identities"].append({
            "name": "limited",
            "credentials": [{"accessKey": LIMITED_KEY, "secretKey": self.limited_secret}],
            "actions": ["Read", "Write", "List", "Tagging"]})
        (self.workdir / "s3.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture
def two_key_seaweed(tmp_path: Path) -> Iterator[_TwoKeySeaweed]:
    server = _TwoKeySeaweed(tmp_path / "weed2")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
def test_key_that_may_not_create_the_bucket_is_told_so_naming_it(
        tmp_path: Path, two_key_seaweed: _TwoKeySeaweed, mongo: Any) -> None:
    settings = central_settings(two_key_seaweed, mongo, "not-there-yet", "madsci_limited",
                                access_key=LIMITED_KEY,
                                secret_key=two_key_seaweed.limited_secret)
    source = tmp_path / "f.txt"
    source.write_bytes(b"a file")
    with BenchService(tmp_path / "b") as bench, SyncEngine(bench, settings) as engine:
        value = bench.capture_value({"x": 1})
        waiting = bench.capture_file(source)
        report = engine.run_pass(force=True)
        assert report.config_error is not None
        assert "'not-there-yet'" in report.config_error
        assert "may not create it" in report.config_error
        assert engine.status()["config_error"] == report.config_error
        # The value is central all the same; the file waits for the bucket.
        assert bench.get_stored(value.datapoint_id).sync_state == "confirmed"
        assert bench.get_stored(waiting.datapoint_id).sync_state == "pending"
    client, pool = two_key_seaweed.client()
    try:
        assert not client.bucket_exists("not-there-yet")
    finally:
        pool.clear()
