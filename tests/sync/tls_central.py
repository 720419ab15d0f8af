"""TLS for the sync tests: a throwaway CA, SeaweedFS serving HTTPS, a TLS proxy for MongoDB.

* :func:`make_ca` / :meth:`TestCA.issue_server_cert` — a CA and a server certificate for
  127.0.0.1 and ``localhost``, made at test time with ``cryptography`` (nothing downloads).
* :class:`TlsSeaweed` — ``weed mini`` with its own HTTPS S3 port (``-s3.port.https``,
  ``-s3.cert.file``, ``-s3.key.file``): the real server does the TLS. Its plain HTTP port
  stays open for the start-up health check only.
* :class:`TlsProxy` — nx-27017 cannot speak TLS, so a real TLS-terminating TCP proxy
  (Python's ``ssl`` over asyncio, in a thread) sits in front of it on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tests.support.servers import SeaweedServer, free_port

_CHUNK = 64 * 1024


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path
    key_file: Path


@dataclass
class TestCA:
    """A certificate authority that exists for one test session."""

    __test__ = False  # not a test class, despite the name

    name: str
    cert_file: Path
    _key: Any
    _cert: Any

    def issue_server_cert(self, folder: Path) -> ServerCert:
        """A server certificate for 127.0.0.1 and localhost, signed by this CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = ec.generate_private_key(ec.SECP256R1())
        names = x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        cert = (_builder(_name("127.0.0.1"), self._cert.subject, key.public_key())
                .add_extension(names, critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()), critical=False)
                .sign(self._key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = folder / "server.pem", folder / "server.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return ServerCert(cert_file, key_file)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: Any, issuer: Any, public_key: Any) -> Any:
    from cryptography import x509

    # Valid from an hour ago: a clock a little behind must not make the test flaky.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2)))


def make_ca(folder: Path, name: str) -> TestCA:
    """A self-signed CA; its certificate is written to ``folder/<name>.pem``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False)
    cert = (_builder(_name(name), _name(name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file = folder / f"{name}.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestCA(name, cert_file, key, cert)


# -- SeaweedFS over HTTPS -------------------------------------------------------------------


class TlsSeaweed(SeaweedServer):
    """``weed mini`` that also serves its S3 API over HTTPS with ``cert``."""

    def __init__(self, workdir: Path, cert: ServerCert) -> None:
        super().__init__(workdir)
        self.cert = cert

    @property
    def https_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['https']}"

    def _argv(self) -> list[str]:
        # Called under the start lock, after the other ports were chosen (or re-chosen).
        others = [p for name, p in self.ports.items() if name != "https"]
        taken = set(others) | {p + 10000 for p in others}  # weed's gRPC ports
        if self.ports.get("https") is None or self.ports["https"] in taken:
            port = free_port()
            while port in taken:
                port = free_port()
            self.ports["https"] = port
        return super()._argv() + [
            f"-s3.cert.file={self.cert.cert_file}", f"-s3.key.file={self.cert.key_file}",
            f"-s3.port.https={self.ports['https']}"]


# -- a TLS-terminating proxy ----------------------------------------------------------------


class TlsProxy:
    """Accepts TLS on 127.0.0.1:``port`` and relays the plain bytes to ``upstream_port``.

    Runs its own event loop in a thread. A client that rejects the certificate just ends
    its handshake; the proxy carries on.
    """

    def __init__(self, upstream_port: int, cert: ServerCert) -> None:
        self.upstream_port = upstream_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy",
                                        daemon=True)
        self._server: Optional[asyncio.base_events.Server] = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def start(self) -> "TlsProxy":
        self._thread.start()
        self._server = self._call(asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self._context))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "TlsProxy":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(client_writer)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port)
            except OSError:
                return
            self._writers.add(upstream_writer)
            await asyncio.gather(_relay(client_reader, upstream_writer),
                                 _relay(upstream_reader, client_writer))
            self._writers.discard(upstream_writer)
        finally:
            client_writer.close()
            self._writers.discard(client_writer)
            self._tasks.discard(task)  # type: ignore[arg-type]


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then close the other side (so both ends see it)."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass  # one side went away; closing the other side is all there is to do
    finally:
        writer.close()
