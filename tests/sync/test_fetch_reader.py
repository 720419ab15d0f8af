"""The download reader behind sync/fetch.py, on its own (a fake response: one piece's logic)."""

from __future__ import annotations

import io

import pytest

from sync.fetch import _CheckedReader


class _Response:
    """What urllib3 hands over: headers, and http.client's response as ``_fp``."""

    def __init__(self, body: bytes, length: int, encoding: str | None = None) -> None:
        self.headers = {"content-length": str(length)}
        if encoding:
            self.headers["content-encoding"] = encoding
        self._fp = io.BytesIO(body)

    def read(self, amount: int) -> bytes:
        return self._fp.read(amount)


def _read_all(reader: _CheckedReader) -> bytes:
    out = bytearray()
    buffer = bytearray(7)
    while n := reader.readinto(buffer):
        out += buffer[:n]
    return bytes(out)


def test_the_body_is_read_straight_into_the_buffers() -> None:
    reader = _CheckedReader(_Response(b"0123456789abcdef", 16), md5=True)
    assert _read_all(reader) == b"0123456789abcdef"
    assert reader.md5 is not None
    assert reader.md5.hexdigest() == "4032af8d61035123906e58e067140cc5"


def test_a_connection_that_ends_early_is_a_broken_download_not_an_end() -> None:
    # http.client's readinto returns 0 quietly when the server hangs up early.
    reader = _CheckedReader(_Response(b"0123456789", 16), md5=False)
    with pytest.raises(OSError, match="6 bytes missing"):
        _read_all(reader)


def test_an_encoded_body_goes_through_urllib3() -> None:
    response = _Response(b"abc", 3, encoding="gzip")
    response._fp = None  # would fail if used
    response.read = lambda amount: b""  # type: ignore[method-assign]
    with pytest.raises(OSError, match="3 bytes missing"):
        _read_all(_CheckedReader(response, md5=False))
