"""Models follow MADSci 0.8.1 field for field (documents from shared/madsci/wire_protocol.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError as PydanticValidationError

from app import DataPoint, FileDataPoint, ObjectStorageDataPoint, OwnershipInfo, ValueDataPoint
from app.core.ids import is_ulid, name_to_id, new_ulid

# Documents exactly as a live MADSci 0.8.1 server returned them.
MADSCI_VALUE = json.loads(
    '{"label":"temp","ownership_info":{"user_id":"01M857BWZZ2382TVE9NZ9XCV6N",'
    '"experiment_id":"01M857BWZZ2382TVE9NZ9XCV6P"},"data_type":"json",'
    '"_id":"01M857BWZZ2382TVE9NZ9XCV6Q","data_timestamp":"2025-01-02T03:04:05.123456","value":23.5}'
)
MADSCI_FILE = json.loads(
    '{"label":"log","ownership_info":{"user_id":"01M857BWZZ2382TVE9NZ9XCV6N"},"data_type":"file",'
    '"_id":"01M857BX0CB61A37TT08D14X0H","data_timestamp":"2025-01-02T03:04:05.123456",'
    '"path":"/srv/store/2026/11/23/01M857BX0CB61A37TT08D14X0H_hello.txt"}'
)
MADSCI_CLIENT_POST = json.loads(
    '{"label":"temp","ownership_info":{"user_id":"01M858AAAAAAAAAAAAAAAAAAAB"},"data_type":"json",'
    '"datapoint_id":"01M858D6C2M7MG2663QFRBGKNX","data_timestamp":"2026-11-23T22:28:43.010442",'
    '"value":{"t":23.5}}'
)


def test_madsci_value_document_reads_and_round_trips() -> None:
    datapoint = DataPoint.discriminate(MADSCI_VALUE)
    assert isinstance(datapoint, ValueDataPoint)
    assert datapoint.datapoint_id == "01M857BWZZ2382TVE9NZ9XCV6Q"
    assert datapoint.value == 23.5
    assert datapoint.ownership_info.experiment_id == "01M857BWZZ2382TVE9NZ9XCV6P"
    # A naive MADSci timestamp stays naive (local wall time) and is written back as it came.
    assert datapoint.data_timestamp == datetime(2025, 1, 2, 3, 4, 5, 123456)
    document = datapoint.to_document()
    assert document["_id"] == MADSCI_VALUE["_id"]
    assert document["data_timestamp"] == "2025-01-02T03:04:05.123456"
    assert document["ownership_info"] == MADSCI_VALUE["ownership_info"]
    assert DataPoint.discriminate(document) == datapoint


def test_madsci_file_document_and_client_post_form() -> None:
    file_dp = DataPoint.discriminate(MADSCI_FILE)
    assert isinstance(file_dp, FileDataPoint)
    assert file_dp.path.endswith("_hello.txt")
    posted = DataPoint.discriminate(MADSCI_CLIENT_POST)  # the client sends datapoint_id
    assert posted.datapoint_id == "01M858D6C2M7MG2663QFRBGKNX"


def test_extra_fields_are_kept() -> None:
    document = dict(MADSCI_VALUE, sample_rack="R2", custom={"a": 1})
    datapoint = DataPoint.discriminate(document)
    assert datapoint.to_document()["sample_rack"] == "R2"
    assert datapoint.to_document()["custom"] == {"a": 1}


def test_ownership_ids_must_be_ulids() -> None:
    with pytest.raises(PydanticValidationError, match="must be a ULID"):
        OwnershipInfo(experiment_id="EXP42")
    assert OwnershipInfo().model_dump() == {}
    assert OwnershipInfo(user_id="01m857bwzz2382tve9nz9xcv6n").user_id == "01M857BWZZ2382TVE9NZ9XCV6N"


def test_ownership_from_names_uses_the_shared_mapping() -> None:
    info = OwnershipInfo.from_names(experiment="EXP42", user="alice")
    assert info.experiment_id == name_to_id("experiment", "EXP42")
    assert info.user_id == name_to_id("user", "alice")
    assert is_ulid(info.experiment_id)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"data_type": "json", "value": 1}, ValueDataPoint),
        ({"data_type": "data_value", "value": 1}, ValueDataPoint),  # MADSci's legacy alias
        ({"data_type": "file", "path": "/x"}, FileDataPoint),
        ({"data_type": "object_storage", "path": "/x", "storage_endpoint": "s3:8333",
          "bucket_name": "b", "object_name": "o", "custom_metadata": {"k": "v"}},
         ObjectStorageDataPoint),
    ],
)
def test_discriminate_picks_the_type(document: dict, expected: type) -> None:
    assert type(DataPoint.discriminate(document)) is expected
    assert type(DataPoint.discriminate(DataPoint.discriminate(document))) is expected


@pytest.mark.parametrize(
    "document",
    [{"value": 1}, {"data_type": "table"}, {"data_type": "file"},
     {"data_type": "object_storage", "path": "/x"}],
)
def test_discriminate_refuses_malformed(document: dict) -> None:
    with pytest.raises((ValueError, PydanticValidationError)):
        DataPoint.discriminate(document)


def test_timestamps_keep_their_offset_and_know_their_instant() -> None:
    eastern = timezone(timedelta(hours=-5))
    datapoint = ValueDataPoint(value=1, data_timestamp=datetime(2026, 1, 1, 7, 0, tzinfo=eastern))
    assert datapoint.data_timestamp.utcoffset() == timedelta(hours=-5)
    assert datapoint.to_document()["data_timestamp"] == "2026-01-01T07:00:00-05:00"
    assert datapoint.data_instant == datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    # MADSci's default: naive local wall time of now.
    assert ValueDataPoint(value=1).data_timestamp.tzinfo is None


def test_custom_metadata_is_text_as_madsci_requires() -> None:
    datapoint = ValueDataPoint(value=1, custom_metadata={"n": 3, "ok": True, "s": "x"})
    assert datapoint.custom_metadata == {"n": "3", "ok": "true", "s": "x"}
    with pytest.raises(PydanticValidationError):
        ValueDataPoint(value=1, custom_metadata={"nested": {"a": 1}})


def test_new_ids_are_ulids_and_time_ordered() -> None:
    first, second = new_ulid(), new_ulid()
    assert is_ulid(first) and is_ulid(second)
    assert not is_ulid("01JD3Q9V6X5J8Z0K2M4N6P8R0") and not is_ulid("81JD3Q9V6X5J8Z0K2M4N6P8R0T")
    assert not is_ulid("01JD3Q9V6X5J8Z0K2M4N6P8R0U")  # U is not Crockford base32


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [("EXP42", "exp42", True), ("EXP42", "  EXP42 ", True), ("EXP42", "EXP43", False),
     ("Caf\u00e9", "Cafe\u0301", True)],
)
def test_name_to_id_is_deterministic_and_normalised(first: str, second: str, same: bool) -> None:
    assert (name_to_id("experiment", first) == name_to_id("experiment", second)) is same
    assert name_to_id("experiment", "X") != name_to_id("user", "X")
