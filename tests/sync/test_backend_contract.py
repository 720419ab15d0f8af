"""The contract every sync backend keeps (``sync.backends``): the in-memory one, SeaweedFS +
nx-27017, and both of those over TLS (verified against the lab's CA).

Only what push, pull, fetch, the scrub and the heartbeats rely on: objects keep bytes,
size, content type, user metadata and an S3 ETag; multipart uploads list their parts and
resume; records follow MongoDB's filters, projections, sorts, conditional upserts (a
duplicate ``_id`` is error 11000), ``$max`` and ``$currentDate``; each backend sorts its
own errors (``is_permanent``, ``is_config_error``).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from tests.sync.central_stores import KINDS, CentralStore, read_object
from tests.sync.test_sync_tls import cas, tls_central, tls_mongo, tls_weed  # noqa: F401  (fixtures)

from sync.backends import BulkWriteError, DeleteOne, UpdateOne
from sync.faults import DUPLICATE_KEY, duplicate_key_on_id

PART = 5 * 1024 * 1024  # S3's smallest part but the last


# Every test on each store, TLS too (the ``sync_backend`` fixture: tests/sync/conftest.py).
pytestmark = pytest.mark.parametrize("sync_backend", [*KINDS, "tls"], indirect=True)


@pytest.fixture
def backend(sync_backend: CentralStore) -> CentralStore:
    return sync_backend


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# -- objects ----------------------------------------------------------------------------


def test_a_put_object_reads_back_with_size_etag_type_and_metadata(backend: CentralStore) -> None:
    objects = backend.objects
    assert objects.bucket_exists()
    objects.make_bucket()  # already there: fine
    data = os.urandom(1000)
    objects.put("a_1", data, content_type="text/csv", metadata={"SHA256": "abc", "filename": "x"})
    info = objects.stat("a_1")
    assert info is not None
    assert (info.name, info.size, info.etag, info.content_type) == ("a_1", 1000, _md5(data),
                                                                    "text/csv")
    assert info.metadata["sha256"] == "abc" and info.metadata["filename"] == "x"
    assert objects.stat("a_1", objects.bucket) == info
    headers, body = read_object(objects, "a_1")
    assert body == data and int(headers["content-length"]) == 1000
    assert headers["etag"].strip('"') == _md5(data)
    assert objects.stat("no-such-object") is None


def test_multipart_uploads_list_their_parts_resume_and_complete(backend: CentralStore) -> None:
    objects = backend.objects
    first, second = os.urandom(PART), os.urandom(1234)
    upload_id = objects.create_multipart("big_1", content_type="application/octet-stream",
                                         metadata={"sha256": "s", "datapoint-id": "D"})
    assert ("big_1", upload_id) in [(u.object_name, u.upload_id)
                                    for u in objects.list_multipart_uploads()]
    etag1 = objects.upload_part("big_1", upload_id, 1, first)
    assert etag1 == _md5(first)
    # A resume asks the server which parts it holds.
    assert [(p.number, p.etag, p.size) for p in objects.list_parts("big_1", upload_id) or []] \
        == [(1, etag1, PART)]
    etag2 = objects.upload_part("big_1", upload_id, 2, second)
    objects.complete_multipart("big_1", upload_id, [(1, etag1), (2, etag2)])
    info = objects.stat("big_1")
    assert info is not None and info.size == PART + 1234
    assert info.etag == _md5(bytes.fromhex(etag1) + bytes.fromhex(etag2)) + "-2"
    assert info.metadata["sha256"] == "s" and info.metadata["datapoint-id"] == "D"
    assert read_object(objects, "big_1")[1] == first + second
    assert upload_id not in [u.upload_id for u in objects.list_multipart_uploads()]


def test_an_aborted_upload_is_gone_and_aborting_again_is_fine(backend: CentralStore) -> None:
    objects = backend.objects
    upload_id = objects.create_multipart("gone_1", content_type="text/plain", metadata={})
    objects.upload_part("gone_1", upload_id, 1, b"part")
    objects.abort_multipart("gone_1", upload_id)
    assert objects.list_parts("gone_1", upload_id) is None
    objects.abort_multipart("gone_1", upload_id)
    assert upload_id not in [u.upload_id for u in objects.list_multipart_uploads()]
    assert objects.stat("gone_1") is None


def test_uploads_say_when_they_began(backend: CentralStore) -> None:
    objects = backend.objects
    upload_id = objects.create_multipart("when_1", content_type="text/plain", metadata={})
    try:
        found = {u.upload_id: u for u in objects.list_multipart_uploads()}[upload_id]
        assert found.initiated is not None and found.initiated.tzinfo is not None
        assert abs(found.initiated - datetime.now(timezone.utc)) < timedelta(hours=1)
    finally:
        objects.abort_multipart("when_1", upload_id)


def test_a_copy_has_the_bytes_and_the_metadata_given_and_removal_is_idempotent(
        backend: CentralStore) -> None:
    objects = backend.objects
    objects.put("old/name", b"payload", content_type="text/plain", metadata={"sha256": "h"})
    objects.copy("old/name", "new_name", content_type="text/plain", metadata={"sha256": "h"})
    info = objects.stat("new_name")
    assert info is not None and info.size == 7 and info.metadata["sha256"] == "h"
    assert info.content_type == "text/plain"
    assert read_object(objects, "new_name")[1] == b"payload"
    objects.remove("old/name")
    objects.remove("old/name")
    assert objects.stat("old/name") is None


def test_object_errors_are_sorted_by_the_backend(backend: CentralStore) -> None:
    objects = backend.objects
    with pytest.raises(Exception) as missing:
        objects.open_stream(objects.bucket, "no-such-object")
    assert objects.is_permanent(missing.value) and not objects.is_config_error(missing.value)
    elsewhere = backend.missing_bucket()  # closed with the store
    assert not elsewhere.bucket_exists()
    with pytest.raises(Exception) as no_bucket:
        elsewhere.put("x", b"1", content_type="text/plain", metadata={})
    assert elsewhere.is_config_error(no_bucket.value)
    assert not elsewhere.is_permanent(no_bucket.value)


# -- records ----------------------------------------------------------------------------


def _upsert(ident: str, revision: int, **fields: Any) -> UpdateOne:
    """Push's guarded upsert: applies only over an older revision."""
    return UpdateOne({"_id": ident, "sync_revision": {"$lt": revision}},
                     {"$set": {"sync_revision": revision, **fields},
                      "$currentDate": {"sync_written_at": True}}, upsert=True)


def test_guarded_upserts_apply_over_older_revisions_and_conflict_on_newer(
        backend: CentralStore) -> None:
    datapoints = backend.records.datapoints
    datapoints.bulk_write([_upsert("A", 2, sync_bench="b1"), _upsert("B", 1, sync_bench="b1")])
    with pytest.raises(BulkWriteError) as conflict:
        datapoints.bulk_write([_upsert("A", 2, sync_bench="b2"), _upsert("B", 3, sync_bench="b2"),
                               _upsert("C", 1, sync_bench="b2")])
    errors = conflict.value.write_errors
    assert [(e["index"], e["code"]) for e in errors] == [(0, DUPLICATE_KEY)]
    assert duplicate_key_on_id(errors[0])
    found = {d["_id"]: d for d in datapoints.find({"_id": {"$in": ["A", "B", "C"]}},
                                                  {"sync_revision": 1, "sync_bench": 1})}
    assert {i: (d["sync_revision"], d["sync_bench"]) for i, d in found.items()} == {
        "A": (2, "b1"), "B": (3, "b2"), "C": (1, "b2")}
    assert set(found["A"]) == {"_id", "sync_revision", "sync_bench"}  # the projection


def test_write_times_are_the_servers_aware_and_in_milliseconds(backend: CentralStore) -> None:
    datapoints = backend.records.datapoints
    before = datetime.now(timezone.utc) - timedelta(minutes=5)
    datapoints.bulk_write([_upsert("T", 1)])
    found = datapoints.find_one({"_id": "T"})
    assert found is not None
    written = found["sync_written_at"]
    assert isinstance(written, datetime) and written.tzinfo is not None
    assert written.microsecond % 1000 == 0 and written > before
    assert datapoints.find_one({"sync_written_at": {"$gte": written}}, {"_id": 1}) == {"_id": "T"}
    assert datapoints.find_one({"sync_written_at": {"$gt": written}}) is None


def test_pages_sort_by_write_time_then_id_and_filter_like_the_pull(backend: CentralStore) -> None:
    datapoints = backend.records.datapoints
    datapoints.bulk_write([_upsert(i, 1, ownership_info={"lab_id": lab}) for i, lab in
                           (("p3", "L1"), ("p1", "L2"), ("p2", "L1"))])
    page = list(datapoints.find({"sync_written_at": {"$ne": None}}, {"_id": 1},
                                sort=[("sync_written_at", 1), ("_id", 1)], limit=2))
    everything = list(datapoints.find({"sync_written_at": {"$ne": None}}, {"_id": 1},
                                      sort=[("sync_written_at", 1), ("_id", 1)]))
    assert len(page) == 2 and page == everything[:2]
    assert len(everything) == 3
    last = datapoints.find_one({"_id": page[-1]["_id"]}, {"sync_written_at": 1})
    assert last is not None
    at, ident = last["sync_written_at"], last["_id"]
    rest = list(datapoints.find({"sync_written_at": {"$ne": None},  # the pull's keyset
                                 "$or": [{"sync_written_at": {"$gt": at}},
                                         {"sync_written_at": at, "_id": {"$gt": ident}}]},
                                {"_id": 1}, sort=[("sync_written_at", 1), ("_id", 1)]))
    # Everything after the position, in order. nx-27017 0.8.1 also matches some earlier
    # documents (it mis-handles ``_id`` inside ``$or``): the pull re-reads them, harmlessly
    # (applying a document is idempotent and the cursor never moves back).
    assert [d for d in rest if d in everything[2:]] == everything[2:]
    assert [d for d in everything if d in rest] == rest  # still in write order
    scoped = datapoints.find({"$and": [{"sync_written_at": {"$ne": None}},
                                       {"$or": [{"ownership_info.lab_id": "L1"}]}]})
    assert sorted(d["_id"] for d in scoped) == ["p2", "p3"]
    assert datapoints.find_one({"missing_field": {"$exists": True}}) is None
    assert len(list(datapoints.find({"missing_field": {"$exists": False}}))) == 3


def test_stamping_foreign_documents_and_deleting_by_filter(backend: CentralStore) -> None:
    datapoints = backend.records.datapoints
    datapoints.update_one({"_id": "m1"}, {"$set": {"label": "madsci"}}, upsert=True)
    datapoints.update_many({"sync_written_at": {"$exists": False}},
                           {"$currentDate": {"sync_written_at": True},
                            "$set": {"sync_revision": 1}})
    stamped = datapoints.find_one({"_id": "m1"})
    assert stamped is not None and stamped["sync_revision"] == 1
    assert isinstance(stamped["sync_written_at"], datetime)
    datapoints.delete_one({"_id": "m1"})
    assert datapoints.find_one({"_id": "m1"}) is None
    datapoints.bulk_write([_upsert("d1", 1), _upsert("d2", 1)])
    datapoints.delete_many({"_id": {"$in": ["d1", "d2"]}})
    assert list(datapoints.find({"_id": {"$in": ["d1", "d2"]}})) == []


def test_tombstones_keep_the_highest_revision_and_go_only_when_not_newer(
        backend: CentralStore) -> None:
    tombstones = backend.records.tombstones

    def tomb(revision: int) -> UpdateOne:
        return UpdateOne({"_id": "X"}, {"$max": {"sync_revision": revision},
                                        "$set": {"sync_bench": "b"},
                                        "$currentDate": {"sync_written_at": True}}, upsert=True)

    tombstones.bulk_write([tomb(5)])
    tombstones.bulk_write([tomb(3)])
    assert (tombstones.find_one({"_id": "X"}) or {})["sync_revision"] == 5
    tombstones.bulk_write([DeleteOne({"_id": "X", "sync_revision": {"$lte": 4}})])
    assert tombstones.find_one({"_id": "X"}) is not None  # a later deletion stays
    tombstones.bulk_write([DeleteOne({"_id": "X", "sync_revision": {"$lte": 5}})])
    assert tombstones.find_one({"_id": "X"}) is None


def test_heartbeats_upsert_and_return_the_document_after(backend: CentralStore) -> None:
    benches = backend.records.benches
    first = benches.find_one_and_update({"_id": "bench-1"},
                                        {"$set": {"backlog": 3},
                                         "$currentDate": {"seen_at": True}},
                                        upsert=True, projection={"seen_at": 1})
    assert first is not None and set(first) == {"_id", "seen_at"}
    again = benches.find_one_and_update({"_id": "bench-1"},
                                        {"$set": {"backlog": 0},
                                         "$currentDate": {"seen_at": True}},
                                        upsert=True, projection={"seen_at": 1})
    assert again is not None and again["seen_at"] >= first["seen_at"]
    assert [d["backlog"] for d in benches.find({})] == [0]
    live = list(benches.find({"seen_at": {"$gte": first["seen_at"] - timedelta(minutes=1)}},
                             {"_id": 1}, sort=[("_id", 1)], limit=1))
    assert live == [{"_id": "bench-1"}]


def test_the_record_store_answers_and_indexes_and_sorts_its_errors(backend: CentralStore) -> None:
    records = backend.records
    records.ping()
    records.ensure_indexes()
    records.ensure_scope_indexes(["lab_id"])
    moment = records.server_time()
    assert moment is None or isinstance(moment, datetime)
    records.datapoints.update_one({"_id": "dup"}, {"$set": {"sync_revision": 2}}, upsert=True)
    with pytest.raises(Exception) as duplicate:
        records.datapoints.update_one({"_id": "dup", "sync_revision": {"$lt": 1}},
                                      {"$set": {"sync_revision": 1}}, upsert=True)
    assert records.is_permanent(duplicate.value) and not records.is_config_error(duplicate.value)
    assert records.datapoints.classify(duplicate.value, what="x").__class__ is \
        records.classify(duplicate.value, what="x").__class__
