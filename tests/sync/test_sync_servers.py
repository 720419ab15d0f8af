"""The test servers themselves: started, reachable, and strict about credentials."""

from __future__ import annotations

import io

import pytest
from minio.error import S3Error

from tests.support.servers import MongoServer, SeaweedServer


def test_seaweed_refuses_a_wrong_secret(seaweed: SeaweedServer) -> None:
    bucket = seaweed.make_bucket()
    good, good_pool = seaweed.client()
    bad, bad_pool = seaweed.client(secret_key="not-the-secret")
    try:
        good.put_object(bucket, "ok.txt", io.BytesIO(b"ok"), 2)
        with pytest.raises(S3Error) as refused:
            bad.put_object(bucket, "nope.txt", io.BytesIO(b"no"), 2)
        assert refused.value.code in {"SignatureDoesNotMatch", "AccessDenied",
                                      "InvalidAccessKeyId"}
    finally:
        good_pool.clear()
        bad_pool.clear()


def test_mongo_answers_standard_operations(mongo: MongoServer) -> None:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(mongo.url, serverSelectionTimeoutMS=5000)
    try:
        coll = client["servers_smoke"]["docs"]
        coll.update_one({"_id": "a"}, {"$set": {"x": 1}, "$currentDate": {"t": True}},
                        upsert=True)
        doc = coll.find_one({"_id": "a"})
        assert doc is not None and doc["x"] == 1 and doc["t"] is not None
    finally:
        client.close()
