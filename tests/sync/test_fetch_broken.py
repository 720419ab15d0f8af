"""A fetch of a multi-chunk file (hashed on the file store's helper thread while it
arrives) that breaks off or does not match: nothing is cached, nothing is served, no
hashing thread is left behind, and a later request fetches the file whole."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from app.core import custody
from app.core.errors import FileDamagedError, FileUnavailableError
from app.core.filestore.streamcopy import NETWORK_CHUNK_SIZE
from app.service import BenchService
from tests.support.servers import PrivateCentral, central_env
from sync import fetch
from sync.engine import SyncEngine
from sync.objects import ObjectStore

# Many network chunks, and more than loopback socket buffers hold, so the server's death
# is seen mid-body rather than after the last byte was already buffered.
SIZE = 48 * NETWORK_CHUNK_SIZE


def _configure(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in central_env(settings).items():
        monkeypatch.setenv(key, value)


def _synced_on_a_pulled_on_b(tmp_path: Path, settings: Any, data: bytes) -> str:
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    with BenchService(tmp_path / "a") as a, SyncEngine(a, settings) as engine:
        ident = a.capture_file(source).datapoint_id
        assert engine.run_pass(force=True).ok
    with BenchService(tmp_path / "b") as b, SyncEngine(b, settings) as engine:
        assert engine.run_pass(force=True).ok
    return ident


def _hashing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "filestore-sha256"]


def _nothing_kept(b: BenchService, ident: str, sha256: str) -> None:
    assert custody.custody_of(b.store, ident) is None
    assert not b.files.exists(sha256)
    assert list(b.files.tmp_dir.iterdir()) == []
    assert _hashing_threads() == []


def test_a_download_broken_mid_body_caches_nothing_and_the_next_request_succeeds(
        tmp_path: Path, private_central: PrivateCentral,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = private_central.settings
    _configure(settings, monkeypatch)
    data = os.urandom(SIZE)
    sha256 = hashlib.sha256(data).hexdigest()
    ident = _synced_on_a_pulled_on_b(tmp_path, settings, data)

    received = 0
    original = fetch._CheckedReader.readinto

    def server_dies_after_two_chunks(self: Any, buffer: Any) -> int:
        nonlocal received
        n = original(self, buffer)
        received += n
        if private_central.weed.running and received >= 2 * NETWORK_CHUNK_SIZE:
            private_central.weed.kill()
        return n

    with BenchService(tmp_path / "b") as b:
        with monkeypatch.context() as patch:
            patch.setattr(fetch._CheckedReader, "readinto", server_dies_after_two_chunks)
            with pytest.raises(FileUnavailableError, match="could not be fetched"):
                b.file_blob(ident)
        assert 2 * NETWORK_CHUNK_SIZE <= received < SIZE  # it broke off mid-body
        _nothing_kept(b, ident, sha256)
        private_central.weed.start()
        assert b.value(ident) == data
        assert b.files.exists(sha256)


def test_a_multi_chunk_central_copy_that_does_not_hash_to_its_record_is_refused(
        tmp_path: Path, central: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(central, monkeypatch)
    data = os.urandom(SIZE)
    ident = _synced_on_a_pulled_on_b(tmp_path, central, data)
    # The same size (the header check passes); one byte differs, in the last chunk.
    forged = bytearray(data)
    forged[-1] ^= 0xFF
    with BenchService(tmp_path / "b") as b:
        object_name = _object_name(b, ident)
        with ObjectStore(central) as objects:
            objects.client.put_object(central.bucket, object_name, io.BytesIO(forged),
                                      len(forged))
        with pytest.raises(FileDamagedError, match="does not match its record"):
            b.file_blob(ident)
        _nothing_kept(b, ident, hashlib.sha256(forged).hexdigest())


def _object_name(b: BenchService, ident: str) -> str:
    """The object name bench B's pulled record gives for ``ident``."""
    datapoint = b.get(ident)
    name = getattr(datapoint, "object_name", None)
    assert name, datapoint
    return str(name)
