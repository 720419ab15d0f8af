"""Where the central store is, and how to log in: the ``central`` settings.

Sources, later ones winning: the ``central`` section of the configuration file, a preset
(``seaweedfs``/``minio``, ``aws``, ``gcs``) filling what is left open, then the environment
variables MADSci users already know (``OBJECT_STORAGE_*``) plus ``BENCHDATA_MONGO_*``.

Secrets (the S3 secret key, a MongoDB URL that carries a password) never go into the
configuration file or a log: they live in the OS keyring, or — on a machine without one —
in a file only this user may read (``central.secrets`` beside the configuration file).
``repr``/``str`` of the settings mask them.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.core.config import load_section, save_section
from app.core.errors import ValidationError
from app.core.paths import BenchPaths
from sync.faults import CentralConfigError

log = logging.getLogger(__name__)

SECTION = "central"
KEYRING_SERVICE = "benchdata-central"
SECRETS_FILE = "central.secrets"

Preset = Literal["seaweedfs", "minio", "aws", "gcs", "custom"]
ScopeKind = Literal["lab", "project", "campaign", "experiment"]

#: What a preset fills in when the user has not said otherwise.
PRESETS: dict[str, dict[str, Any]] = {
    "seaweedfs": {"secure": False, "region": "us-east-1"},
    "minio": {"secure": False, "region": "us-east-1"},
    "aws": {"endpoint": "s3.amazonaws.com", "secure": True},
    # Google Cloud Storage through its S3-compatible XML API with HMAC keys.
    "gcs": {"endpoint": "storage.googleapis.com", "secure": True, "region": "auto"},
    "custom": {},
}

#: Environment variable -> settings field.
ENV_VARS: dict[str, str] = {
    "OBJECT_STORAGE_ENDPOINT": "endpoint",
    "OBJECT_STORAGE_ACCESS_KEY": "access_key",
    "OBJECT_STORAGE_SECRET_KEY": "secret_key",
    "OBJECT_STORAGE_SECURE": "secure",
    "OBJECT_STORAGE_DEFAULT_BUCKET": "bucket",
    "OBJECT_STORAGE_REGION": "region",
    "BENCHDATA_MONGO_URL": "mongo_url",
    "BENCHDATA_MONGO_DATABASE": "mongo_database",
    "BENCHDATA_MONGO_COLLECTION": "mongo_collection",
    "BENCHDATA_CA_FILE": "ca_file",
}
SECRET_FIELDS = ("secret_key", "mongo_url")


class CentralSettings(BaseModel):
    """The central MongoDB + bucket, and how the engine talks to them."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    preset: Preset = "custom"
    #: ``host[:port]`` of the S3 API (a URL is accepted; its scheme sets ``secure``).
    endpoint: Optional[str] = None
    access_key: Optional[str] = None
    secret_key: Optional[SecretStr] = None
    secure: bool = False
    bucket: Optional[str] = None
    region: Optional[str] = None
    #: Where people (and MADSci's client) reach the bucket, if not ``endpoint``.
    public_endpoint: Optional[str] = None
    #: A PEM bundle of the certificate authorities to trust for TLS (object storage over
    #: HTTPS, and MongoDB when its URL says ``tls=true``) — e.g. the lab's own CA. It
    #: replaces the default trust store (certifi, ``SSL_CERT_FILE``), as curl's ``--cacert``.
    ca_file: Optional[str] = None
    mongo_url: Optional[SecretStr] = None
    mongo_database: str = "madsci_data"
    mongo_collection: str = "datapoints"
    #: Deletions are kept here (MADSci's own collection only holds live datapoints).
    tombstone_collection: str = "benchdata_tombstones"
    #: One heartbeat document per bench (``sync/fleet.py``), beside the datapoints.
    benches_collection: str = "benches"
    #: The prefix of the object names older benches wrote (``<prefix><ULID>/<name>``),
    #: which sync moves to the names MADSci can serve (``sync/objects.py``).
    object_prefix: str = "benchdata/"
    part_size: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    #: Largest object the bucket policy accepts (None: unknown); larger -> quarantine.
    max_object_size: Optional[int] = None
    pull: bool = True
    #: Pull reads back this far behind its cursor, for writes that committed after a
    #: reader passed their write time. Every bench stamps again a write slower than half
    #: of it (at least 5 s; ``sync.stamps``), so it must be the same on every bench: a lab
    #: with a slow central store raises it everywhere (the site file can lock it).
    pull_overlap_s: float = 10.0
    pull_interval_s: float = 5.0
    #: What this bench pulls: "everything", or the labs, projects, campaigns and
    #: experiments it subscribes to, by name or id (``{"experiment": ["EXP42"]}``); other
    #: datapoints are fetched when asked for by id. The site file may lock it
    #: (``"locked": ["central.pull_scope"]``).
    pull_scope: Union[Literal["everything"], dict[ScopeKind, list[str]]] = "everything"
    #: Documents per pull page; the cursor is saved after each page (a killed first pull
    #: resumes at the page it was in).
    pull_page_size: int = Field(default=1000, ge=1, le=10_000)
    #: Free local copies of files verified central for this many days (None: never).
    free_verified_after_days: Optional[float] = None
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    upload_workers: int = Field(default=4, ge=1, le=32)
    timeout_s: float = 30.0

    @field_validator("endpoint", mode="before")
    @classmethod
    def _bare_endpoint(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if "://" in value:
                value = urlsplit(value).netloc
            return value.rstrip("/") or None
        return value

    @field_validator("ca_file", mode="before")
    @classmethod
    def _expand_ca_file(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return os.path.expanduser(value) if value else None
        return value

    @field_validator("secure", mode="before")
    @classmethod
    def _bool_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"secure must be true or false, got {value!r}")
        return value

    # -- derived -----------------------------------------------------------------------

    @property
    def objects_configured(self) -> bool:
        return bool(self.endpoint and self.bucket and self.access_key and self.secret_key)

    @property
    def mongo_configured(self) -> bool:
        return self.mongo_url is not None and bool(self.mongo_url.get_secret_value())

    @property
    def configured(self) -> bool:
        return self.mongo_configured

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def ca_bundle(self) -> Optional[str]:
        """``ca_file`` if set, after checking it is a readable file (else a config error).

        Checked here, when a connection is made, rather than when the settings load: a CA
        file that went missing must not make the settings (and ``sync status``) unreadable.
        """
        if not self.ca_file:
            return None
        path = Path(self.ca_file)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CentralConfigError(
                f"the CA bundle {self.ca_file} is not a readable file; fix ca_file "
                "(BENCHDATA_CA_FILE or `benchdata sync configure --ca-file`)")
        return str(path)

    def object_url(self, object_name: str) -> str:
        from urllib.parse import quote

        base = self.public_endpoint or self.endpoint_url
        if "://" not in base:
            base = f"{'https' if self.secure else 'http'}://{base}"
        return f"{base.rstrip('/')}/{self.bucket}/{quote(object_name)}"

    def describe(self) -> dict[str, Any]:
        """A summary safe to print or log: no secrets."""
        return {
            "preset": self.preset,
            "endpoint": self.endpoint,
            "secure": self.secure,
            "bucket": self.bucket,
            "region": self.region,
            "ca_file": self.ca_file,
            "access_key": self.access_key,
            "secret_key": "set" if self.secret_key else "missing",
            "mongo_url": redact_url(self.mongo_url.get_secret_value()) if self.mongo_url else None,
            "mongo_database": self.mongo_database,
            "mongo_collection": self.mongo_collection,
        }

    def require_complete(self) -> None:
        """Raise a ValidationError saying what is missing, if anything is."""
        missing = [name for name, ok in (
            ("mongo_url (BENCHDATA_MONGO_URL)", self.mongo_configured),
            ("endpoint (OBJECT_STORAGE_ENDPOINT)", bool(self.endpoint)),
            ("bucket (OBJECT_STORAGE_DEFAULT_BUCKET)", bool(self.bucket)),
            ("access_key (OBJECT_STORAGE_ACCESS_KEY)", bool(self.access_key)),
            ("secret_key (OBJECT_STORAGE_SECRET_KEY)", bool(self.secret_key)),
        ) if not ok]
        if missing:
            raise ValidationError(
                "the central store is not fully configured; missing: " + ", ".join(missing)
                + ". Set them with `benchdata sync configure` or the environment variables."
            )


def redact_url(url: str) -> str:
    """A URL with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query,
                       parts.fragment))


# -- secrets -----------------------------------------------------------------------------


def _asks_for_a_password(backend: Any) -> bool:
    """keyrings.alt's encrypted file keyrings prompt on the terminal for a master password:
    a service with no one at the keyboard would hang there, so they are never used (our
    0600 file is the fallback instead). Chainers are checked member by member."""
    members = getattr(backend, "backends", None)
    if members:
        return any(_asks_for_a_password(member) for member in members)
    kind = type(backend)
    return kind.__module__.startswith("keyrings.alt") and any(
        word in kind.__name__ for word in ("Encrypted", "CryptFile"))


class SecretStore:
    """The OS keyring if there is one, else a file readable only by this user."""

    def __init__(self, paths: BenchPaths) -> None:
        self._file = paths.config_dir / SECRETS_FILE

    @staticmethod
    def _keyring() -> Any:
        try:
            import keyring
            from keyring.backends.fail import Keyring as FailKeyring
        except Exception:  # noqa: BLE001 - keyring may be broken in odd ways
            return None
        try:
            backend = keyring.get_keyring()
        except Exception:  # noqa: BLE001
            return None
        if isinstance(backend, FailKeyring) or getattr(backend, "priority", 1) <= 0:
            return None
        if _asks_for_a_password(backend):
            return None
        return keyring

    @property
    def backend_name(self) -> str:
        return "keyring" if self._keyring() is not None else f"file {self._file}"

    def get(self, name: str) -> Optional[str]:
        keyring = self._keyring()
        if keyring is not None:
            try:
                value = keyring.get_password(KEYRING_SERVICE, name)
                if value is not None:
                    return str(value)
            except Exception:  # noqa: BLE001 - fall back to the file
                log.warning("the OS keyring could not be read; trying the secrets file")
        return self._read_file().get(name)

    def set(self, name: str, value: Optional[str]) -> None:
        keyring = self._keyring()
        if keyring is not None:
            try:
                if value is None:
                    try:
                        keyring.delete_password(KEYRING_SERVICE, name)
                    except Exception:  # noqa: BLE001 - nothing stored
                        pass
                else:
                    keyring.set_password(KEYRING_SERVICE, name, value)
                self._write_file_entry(name, None)
                return
            except Exception:  # noqa: BLE001
                log.warning("the OS keyring refused the secret %s; using the secrets file", name)
        self._write_file_entry(name, value)

    def _read_file(self) -> dict[str, str]:
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_file_entry(self, name: str, value: Optional[str]) -> None:
        data = self._read_file()
        if value is None:
            if name not in data:
                return
            data.pop(name)
        else:
            data[name] = value
        self._file.parent.mkdir(parents=True, exist_ok=True)
        temp = self._file.with_name(self._file.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self._file)


# -- loading and saving ------------------------------------------------------------------


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    return {field: environ[var] for var, field in ENV_VARS.items() if environ.get(var)}


def load_settings(paths: BenchPaths, environ: Optional[Mapping[str, str]] = None) -> CentralSettings:
    """The effective settings: file section < preset defaults < secrets < environment."""
    environ = os.environ if environ is None else environ
    section = load_section(paths, SECTION) or {}
    if not isinstance(section, dict):
        raise ValidationError(f"the {SECTION!r} configuration section must be an object")
    data: dict[str, Any] = {k: v for k, v in section.items() if k not in SECRET_FIELDS}
    preset = str(environ.get("BENCHDATA_CENTRAL_PRESET") or data.get("preset") or "custom")
    if preset not in PRESETS:
        raise ValidationError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    for key, value in PRESETS[preset].items():
        data.setdefault(key, value)
    data["preset"] = preset
    from_environment = _env_values(environ)
    # Secrets the environment gives are not looked up: opening the OS keyring costs a
    # noticeable fraction of a second in every one-shot command (and may not exist at all
    # for a service account).
    secrets = SecretStore(paths)
    for name in SECRET_FIELDS:
        stored = None if name in from_environment else secrets.get(name)
        if stored:
            data[name] = stored
    if section.get("mongo_url") and "mongo_url" not in data:
        data["mongo_url"] = section["mongo_url"]  # a URL without a password
    data.update(from_environment)
    endpoint = data.get("endpoint")
    if isinstance(endpoint, str) and "://" in endpoint and "OBJECT_STORAGE_SECURE" not in environ:
        data["secure"] = endpoint.startswith("https://")
    try:
        return CentralSettings(**data)
    except Exception as exc:
        raise ValidationError(f"the central settings are invalid: {exc}") from exc


def save_settings(paths: BenchPaths, settings: CentralSettings) -> None:
    """Write the section (without secrets) and put the secrets in the secret store."""
    data = settings.model_dump(mode="json", exclude={"secret_key", "mongo_url"},
                               exclude_defaults=True)
    data["preset"] = settings.preset
    secrets = SecretStore(paths)
    secrets.set("secret_key", settings.secret_key.get_secret_value() if settings.secret_key else None)
    mongo = settings.mongo_url.get_secret_value() if settings.mongo_url else None
    if mongo is not None and urlsplit(mongo).password is None:
        data["mongo_url"] = mongo  # nothing secret in it: keep it readable in the file
        secrets.set("mongo_url", None)
    else:
        secrets.set("mongo_url", mongo)
    save_section(paths, SECTION, data)


def secrets_location(paths: BenchPaths) -> str:
    return SecretStore(paths).backend_name


def settings_file(paths: BenchPaths) -> Path:
    return paths.config_file


def load_section_settings(paths: BenchPaths) -> CentralSettings:
    """The stored settings alone (file + secrets), without the environment's overrides."""
    return load_settings(paths, environ={})
