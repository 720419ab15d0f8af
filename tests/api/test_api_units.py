"""The API's building blocks on their own: the streaming multipart reader, group commit,
the guard's header parsing, file-name cleaning."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from app.api.app import safe_filename
from app.api.group_commit import GroupCommitter
from app.api.guard import host_of, is_loopback_name, token_from_headers
from app.api.multipart import MultipartError, MultipartReader, PartStream
from app.core.errors import ConflictError
from app.core.ids import new_ulid
from app.core.models import ValueDataPoint
from app.service import BenchService

BOUNDARY = b"XyZ"
BODY = (b"--XyZ\r\nContent-Disposition: form-data; name=\"datapoint\"\r\n\r\n"
        b"{\"data_type\": \"file\"}\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a\\\"b.txt\"\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"line 1\r\n--Xy not a boundary\r\nline 3\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n"
        b"--XyZ--\r\n")


def chunked(data: bytes, size: int) -> Any:
    pieces = iter([data[i:i + size] for i in range(0, len(data), size)])
    return lambda: next(pieces, b"")


def read_all(reader: MultipartReader, read_size: int) -> list[tuple[str | None, str | None, bytes]]:
    parts = []
    while (part := reader.next_part()) is not None:
        stream = PartStream(reader)
        content = b"".join(iter(lambda: stream.read(read_size), b""))
        parts.append((part.name, part.filename, content))
    return parts


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 16, 64, 1 << 20])
@pytest.mark.parametrize("read_size", [1, 5, 4096])
def test_multipart_parts_survive_any_chunking(chunk_size: int, read_size: int) -> None:
    reader = MultipartReader(chunked(BODY, chunk_size), BOUNDARY)
    assert read_all(reader, read_size) == [
        ("datapoint", None, b'{"data_type": "file"}'),
        ("files", 'a"b.txt', b"line 1\r\n--Xy not a boundary\r\nline 3"),
        ("empty", None, b""),
    ]


def test_multipart_skips_unread_parts_and_reads_into_buffers() -> None:
    reader = MultipartReader(chunked(BODY, 10), BOUNDARY)
    assert reader.next_part() is not None  # datapoint, not read
    files = reader.next_part()
    assert files is not None and files.content_type == "text/plain"
    buffer = bytearray(4)
    assert PartStream(reader).readinto(buffer) == 4 and bytes(buffer) == b"line"
    empty = reader.next_part()
    assert empty is not None and empty.name == "empty"
    assert reader.next_part() is None


@pytest.mark.parametrize("body,message", [
    (BODY[:60], "ended"),
    (BODY.replace(b"--XyZ--", b"--XyZ"), "closing boundary|ended"),
    (b"nonsense without boundaries", "malformed|ended"),
])
def test_multipart_refuses_truncated_or_malformed_bodies(body: bytes, message: str) -> None:
    reader = MultipartReader(chunked(body, 16), BOUNDARY)
    with pytest.raises(MultipartError, match=message):
        read_all(reader, 1024)


def test_group_commit_batches_concurrent_submissions(service: BenchService,
                                                     batch_sizes: list[int]) -> None:
    committer = GroupCommitter(service)
    taken = new_ulid()
    service.submit(ValueDataPoint(datapoint_id=taken, value="first"))
    batch_sizes.clear()  # count the committer's batches only
    results: dict[int, Any] = {}

    def client(i: int) -> None:
        datapoint = ValueDataPoint(datapoint_id=taken if i == 5 else new_ulid(), value=i)
        try:
            results[i] = committer.submit(datapoint).value
        except ConflictError as exc:
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    # Hold the store while the clients arrive, as a slow commit would: they queue up.
    with service.store.transaction():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while committer.pending() < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
    for thread in threads:
        thread.join(60)
    committer.close()
    assert max(batch_sizes) >= 2, batch_sizes  # they shared a transaction
    assert isinstance(results.pop(5), ConflictError)
    assert results == {i: i for i in range(24) if i != 5}
    assert service.count() == 1 + 23
    assert service.get(taken).value == "first"


def test_guard_reads_hosts_and_tokens() -> None:
    assert host_of("127.0.0.1:8004") == "127.0.0.1"
    assert host_of("[::1]:8004") == "::1"
    assert host_of("localhost") == "localhost"
    assert all(map(is_loopback_name, ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"]))
    assert not any(map(is_loopback_name, ["evil.example", "10.0.0.1", "0.0.0.0", ""]))
    assert token_from_headers({b"authorization": b"Bearer abc"}) == "abc"
    assert token_from_headers({b"authorization": b"Basic YmVuY2g6czNjcmV0"}) == "s3cret"
    assert token_from_headers({b"authorization": b"Basic !!!"}) is None
    assert token_from_headers({b"x-bench-token": b"xyz"}) == "xyz"
    assert token_from_headers({}) is None


@pytest.mark.parametrize("name,expected", [
    ("run.txt", "run.txt"), ("../../etc/passwd", "passwd"), ("..\\..\\win.ini", "win.ini"),
    ("..", "upload"), ("", "upload"), (None, "upload"), ("a\x00b\x1f.txt", "ab.txt"),
    ("x" * 300 + ".bin", "x" * 200), ("résumé.pdf", "résumé.pdf"),
])
def test_file_names_are_cleaned(name: str | None, expected: str) -> None:
    assert safe_filename(name) == expected
