"""Serve the API with uvicorn on a background thread, with a prompt, clean stop.

The listening socket is bound here, before uvicorn starts, so that a port already in use
or a refused address is a clear error in the caller's thread (and ``port=0`` gives a free
port whose number is known at once). Binding beyond loopback requires a token: the API
writes to the bench's store and has no other authentication.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from typing import Any, Optional

import uvicorn
from fastapi import FastAPI

from app.api.app import create_app
from app.api.coalesce import coalescing_protocol
from app.api.guard import is_loopback_name
from app.core.errors import BenchDataError
from app.service import BenchService

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8004


class ApiConfigError(BenchDataError):
    """The API cannot listen as asked (address in use, non-loopback without a token ...)."""


def is_loopback(host: str) -> bool:
    return is_loopback_name(host)


def check_bind(host: str, token: Optional[str]) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ApiConfigError(
            f"refusing to serve the REST API on {host}: beyond loopback (127.0.0.1) it "
            f"needs a token; set BENCHDATA_API_TOKEN (clients then send it, see "
            f"docs/rest-api.md) or keep the default address 127.0.0.1")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no port sharing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ApiConfigError(
                f"port {port} on {host} is already in use (is MADSci's Data Manager or "
                f"another benchdata service running?): stop it, or choose another port "
                f"with --api-port or BENCHDATA_API_PORT") from None
        raise ApiConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class ApiServer:
    """One uvicorn server for one app, on its own thread."""

    def __init__(self, service: Optional[BenchService] = None, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, *, token: Optional[str] = None,
                 app: Optional[FastAPI] = None, allowed_origins: tuple[str, ...] = (),
                 graceful_timeout_s: float = 5.0) -> None:
        check_bind(host, token)
        if app is None and service is None:
            raise ValueError("ApiServer needs a service or an app")
        self.host = host
        self.requested_port = port
        self.token = token
        self._service = service
        self._app = app
        self._allowed_origins = allowed_origins
        self._graceful_timeout_s = graceful_timeout_s
        self._socket: Optional[socket.socket] = None
        self._server: Optional[uvicorn.Server] = None
        self._serving: Optional[Any] = None
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, as MADSci's DataClient wants it."""
        if self.port is None:
            raise RuntimeError("the server is not started")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def start(self, timeout_s: float = 15.0) -> None:
        if self._thread is not None:
            return
        sock = _bind(self.host, self.requested_port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        app = self._app
        if app is None:
            assert self._service is not None
            app = create_app(
                self._service, token=self.token,
                loopback_only=is_loopback(self.host),
                allowed_origins=self._allowed_origins, server_url=self.url)
        self._serving = app
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_graceful_shutdown=int(max(1, self._graceful_timeout_s)),
            timeout_keep_alive=30,
            # "auto" picks uvloop (and httptools) when installed, as uvicorn[standard]
            # does; the pure-Python fallbacks work, slower. With httptools, responses go
            # out in one write each (app.api.coalesce).
            loop="auto", http=coalescing_protocol() or "auto",
            # No proxy in front by default, and nothing here reads the client address:
            # skip the per-request X-Forwarded-* rewrite layer.
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="benchdata-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise ApiConfigError(f"the REST API failed to start: {self._failure}")
            if time.monotonic() > deadline:
                self.stop()
                raise ApiConfigError(f"the REST API did not start within {timeout_s} s")
            time.sleep(0.005)
        log.info("REST API listening on %s (docs at %sdocs)", self.url, self.url)

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start() or stop()
            self._failure = exc
            log.exception("the REST API server stopped with an error")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop accepting, let running requests finish (a few seconds at most), close."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout_s)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout_s)
        # Requests are over: let the committer finish and its thread end now, rather
        # than after its idle timeout.
        committer = getattr(getattr(self._serving, "state", None), "committer", None)
        if committer is not None:
            committer.close()
        self._serving = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
        self._thread = None

    def __enter__(self) -> "ApiServer":
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
