"""Secrets go to the keyring when there is one, else to a file only this user can read.

The keyring here is a real backend (keyrings.alt's file keyring, through the ``keyring``
library's own API), kept in this test's folder; ``tests/conftest.py`` pins every other
test to "no keyring", so nothing reaches the developer's own keyring.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from click.testing import CliRunner
from keyrings.alt.file import PlaintextKeyring

from app.cli import cli
from app.core.paths import BenchPaths
from app.service import BenchService
from sync.settings import KEYRING_SERVICE, SECRETS_FILE, CentralSettings, load_settings, \
    save_settings, secrets_location

SECRET = "s3-secret-Zq81"
MONGO_WITH_PASSWORD = "mongodb://bench:pw-Kx3@db.lab.example:27017/"


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[BenchPaths]:
    with BenchService(tmp_path / "bench") as bench:
        yield bench.paths


def _settings(**overrides: Any) -> CentralSettings:
    values: dict[str, Any] = dict(preset="seaweedfs", endpoint="s3.lab.example:8333",
                                  access_key="AK", secret_key=SECRET, bucket="lab",
                                  mongo_url=MONGO_WITH_PASSWORD)
    values.update(overrides)
    return CentralSettings(**values)


def test_secrets_go_to_the_keyring_not_the_files(file_keyring: PlaintextKeyring,
                                                 paths: BenchPaths) -> None:
    save_settings(paths, _settings())
    assert file_keyring.get_password(KEYRING_SERVICE, "secret_key") == SECRET
    assert file_keyring.get_password(KEYRING_SERVICE, "mongo_url") == MONGO_WITH_PASSWORD
    config = paths.config_file.read_text(encoding="utf-8")
    assert SECRET not in config and "pw-Kx3" not in config and "s3.lab.example" in config
    assert not (paths.config_dir / SECRETS_FILE).exists()
    assert secrets_location(paths) == "keyring"
    loaded = load_settings(paths, environ={})
    assert loaded.secret_key is not None and loaded.secret_key.get_secret_value() == SECRET
    assert loaded.mongo_url is not None
    assert loaded.mongo_url.get_secret_value() == MONGO_WITH_PASSWORD


def test_a_url_without_password_leaves_the_keyring(file_keyring: PlaintextKeyring,
                                                   paths: BenchPaths) -> None:
    save_settings(paths, _settings())
    plain = "mongodb://db.lab.example:27017/"
    save_settings(paths, _settings(mongo_url=plain))
    assert file_keyring.get_password(KEYRING_SERVICE, "mongo_url") is None
    assert json.loads(paths.config_file.read_text(encoding="utf-8"))["central"]["mongo_url"] \
        == plain
    assert load_settings(paths, environ={}).mongo_url.get_secret_value() == plain  # type: ignore[union-attr]


def test_without_a_keyring_secrets_are_in_a_private_file(paths: BenchPaths) -> None:
    assert secrets_location(paths).startswith("file ")  # conftest: no keyring
    save_settings(paths, _settings())
    secrets_file = paths.config_dir / SECRETS_FILE
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert json.loads(secrets_file.read_text(encoding="utf-8"))["secret_key"] == SECRET
    assert SECRET not in paths.config_file.read_text(encoding="utf-8")


def test_secrets_move_from_the_file_to_a_keyring_that_appears(tmp_path: Path,
                                                              paths: BenchPaths) -> None:
    save_settings(paths, _settings())  # no keyring yet: the private file
    secrets_file = paths.config_dir / SECRETS_FILE
    assert SECRET in secrets_file.read_text(encoding="utf-8")
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "later-keyring" / "keyring_pass.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        before = load_settings(paths, environ={})  # still readable from the file
        assert before.secret_key.get_secret_value() == SECRET  # type: ignore[union-attr]
        save_settings(paths, before)
        assert backend.get_password(KEYRING_SERVICE, "secret_key") == SECRET
        assert SECRET not in secrets_file.read_text(encoding="utf-8")
    finally:
        keyring.set_keyring(previous)


def test_cli_configure_puts_the_secret_in_the_keyring(tmp_path: Path,
                                                      file_keyring: PlaintextKeyring) -> None:
    result = CliRunner().invoke(cli, [
        "--data-dir", str(tmp_path / "cli-bench"), "sync", "configure", "--preset", "minio",
        "--endpoint", "http://s3.lab.example:9000", "--access-key", "AK",
        "--secret-key", SECRET, "--bucket", "lab", "--mongo-url", MONGO_WITH_PASSWORD],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "secrets are in the keyring" in result.output
    assert SECRET not in result.output and "pw-Kx3" not in result.output
    assert file_keyring.get_password(KEYRING_SERVICE, "secret_key") == SECRET


def test_a_keyring_that_would_prompt_for_a_password_is_not_used(
        tmp_path: Path, paths: BenchPaths) -> None:
    """keyrings.alt's encrypted keyring asks for a master password on the terminal; a
    service under systemd would hang there. The private file is used instead."""
    from keyrings.alt.file import EncryptedKeyring

    backend = EncryptedKeyring()
    backend.file_path = str(tmp_path / "keyring" / "crypted_pass.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        save_settings(paths, _settings())  # would block on getpass if the keyring were used
        assert not Path(backend.file_path).exists()
        assert secrets_location(paths).startswith("file ")
        assert load_settings(paths, environ={}).secret_key.get_secret_value() == SECRET
    finally:
        keyring.set_keyring(previous)
