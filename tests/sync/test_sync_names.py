"""Object names MADSci's server can serve, and the move of objects under old names."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.core.ids import new_ulid
from app.service import BenchService
from sync import push as push_module
from sync.engine import SyncEngine
from sync.objectnames import is_bench_object_name, legacy_object_name, object_name_for
from sync.objects import ObjectStore
from sync.settings import CentralSettings

SETTINGS = CentralSettings()
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def test_names_have_no_slash_carry_the_ulid_and_the_file_name() -> None:
    ident = new_ulid()
    name = object_name_for(SETTINGS, ident, "data/run 1/spectrum.csv")
    spread, ulid, rest = name.split("_", 2)
    assert "/" not in name and ulid == ident and rest == "spectrum.csv"
    assert spread == hashlib.sha256(ident.encode()).hexdigest()[:4]
    assert is_bench_object_name(SETTINGS, name)
    assert object_name_for(SETTINGS, new_ulid(), "spectrum.csv") != name  # unique per id


def test_a_long_non_ascii_name_still_fits_madsci_temporary_file() -> None:
    # NamedTemporaryFile(suffix="_" + object_name): "tmp" + 8 characters + suffix
    name = object_name_for(SETTINGS, new_ulid(), "測定–" * 80 + ".csv")
    assert len(("tmpabcdefgh_" + name).encode("utf-8")) <= 255
    assert name.endswith(".csv")


def test_names_spread_over_key_ranges() -> None:
    """Ids made in the same millisecond share their first ten characters; the names'
    first characters must not (S3 splits a bucket by key range)."""
    names = [object_name_for(SETTINGS, new_ulid(), "x.csv") for _ in range(4096)]
    first = Counter(name[0] for name in names)
    assert len(first) == 16 and max(first.values()) < 4096 / 16 * 1.5


def _central_docs(settings: CentralSettings) -> dict[str, dict[str, Any]]:
    client: Any = pymongo.MongoClient(settings.mongo_url.get_secret_value())  # type: ignore[union-attr]
    try:
        return {d["_id"]: d for d in
                client[settings.mongo_database][settings.mongo_collection].find()}
    finally:
        client.close()


def _bucket(settings: CentralSettings) -> dict[str, str]:
    """object name -> SHA-256 of its bytes."""
    found = {}
    with ObjectStore(settings) as objects:
        for obj in objects.client.list_objects(settings.bucket, recursive=True):
            response = objects.client.get_object(settings.bucket, obj.object_name)
            try:
                found[obj.object_name] = hashlib.sha256(response.read()).hexdigest()
            finally:
                response.close()
                response.release_conn()
    return found


def sync_with_old_names(bench: BenchService, settings: CentralSettings,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What an older bench did: objects under ``benchdata/<ULID>/<name>``."""
    with monkeypatch.context() as patched:
        patched.setattr(push_module, "object_name_for", legacy_object_name)
        with SyncEngine(bench, settings) as engine:
            report = engine.run_pass(force=True)
    assert report.ok and report.remaining == 0, report


def test_objects_under_old_names_move_once_and_others_pull_the_new_names(
        tmp_path: Path, central: CentralSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {}
    with BenchService(tmp_path / "a") as bench:
        for index, (name, size) in enumerate((("empty.dat", 0), ("result.csv", 2000),
                                              ("result.csv", 3000), ("µg°C.csv", 10))):
            folder = tmp_path / f"src{index}"
            folder.mkdir()
            (folder / name).write_bytes(os.urandom(size))
            dp = bench.capture_file(folder / name)
            files[dp.datapoint_id] = dp
        value = bench.capture_value({"x": 1})
        sync_with_old_names(bench, central, monkeypatch)
        assert all("/" in d["object_name"] for d in _central_docs(central).values()
                   if d["data_type"] == "object_storage")
        revisions = {i: bench.get_stored(i).revision for i in files}

        with BenchService(tmp_path / "b") as other, SyncEngine(other, central) as engine_b:
            assert engine_b.run_pass(force=True).pulled == len(files) + 1  # old names

            with SyncEngine(bench, central) as engine:
                report = engine.run_pass(force=True)
                assert report.ok and report.remaining == 0 and report.renamed == len(files)
                again = engine.run_pass(force=True)
                assert again.renamed == 0 and again.confirmed == 0  # moved once

            docs = _central_docs(central)
            bucket = _bucket(central)
            assert len(bucket) == len(files) and not any("/" in n for n in bucket)
            for ident, dp in files.items():
                doc = docs[ident]
                stored = bench.get_stored(ident)
                assert doc["object_name"] == object_name_for(central, ident, dp.filename)
                assert doc["url"].endswith(doc["object_name"].replace("°", "%C2%B0")
                                           .replace("µ", "%C2%B5"))
                assert bucket[doc["object_name"]] == dp.sha256 == doc["sha256"]
                assert stored.revision == revisions[ident] + 1 == doc["sync_revision"]
                assert stored.sync_state == "confirmed"
                receipt = bench.custody(ident)  # the receipt names the object now in use
                assert receipt is not None and receipt["safe_to_delete"]
                assert receipt["central_verified"]["object_name"] == doc["object_name"]
            assert docs[value.datapoint_id]["sync_revision"] == 1  # values untouched

            assert engine_b.run_pass(force=True).pulled == len(files)  # the new names
            for ident in files:
                pulled = other.get(ident)
                assert pulled.object_name == docs[ident]["object_name"]
                sha = engine_b.fetch_file(ident)  # the moved object downloads and verifies
                assert sha == files[ident].sha256
