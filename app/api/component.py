"""The REST API as a component of ``benchdata run`` (and of the GUI's runner).

Address: ``--api-host`` / ``BENCHDATA_API_HOST`` (default 127.0.0.1); port: ``--api-port``
/ ``BENCHDATA_API_PORT`` (default 8004, MADSci's); token: ``BENCHDATA_API_TOKEN`` (or
``RunOptions.extra["api_token"]``), required beyond loopback; browser origins to let
through (CORS, for MADSci's dashboard): ``BENCHDATA_API_ALLOWED_ORIGINS`` (comma-separated),
else the ``api`` section's ``allowed_origins`` list in the configuration file; default none.
``--no-api`` switches it off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Optional

from app.api.guard import check_origins, parse_origins
from app.api.server import DEFAULT_HOST, DEFAULT_PORT, ApiConfigError, ApiServer, check_bind
from app.core.component import RunOptions
from app.core.config import load_section
from app.core.paths import BenchPaths
from app.service import BenchService

log = logging.getLogger(__name__)

HOST_ENV = "BENCHDATA_API_HOST"
PORT_ENV = "BENCHDATA_API_PORT"
TOKEN_ENV = "BENCHDATA_API_TOKEN"
ORIGINS_ENV = "BENCHDATA_API_ALLOWED_ORIGINS"
#: The configuration file's section for this API.
SECTION = "api"


class ApiComponent:
    """Starts and stops the API server; ``stop`` is prompt and idempotent."""

    name = "rest-api"

    def __init__(self, service: BenchService, host: str, port: int, token: Optional[str],
                 allowed_origins: tuple[str, ...] = ()) -> None:
        self.server = ApiServer(service, host, port, token=token,
                                allowed_origins=allowed_origins)

    @property
    def address(self) -> str:
        """Where clients reach the API (shown by a window attached to this service)."""
        return self.server.url

    def start(self) -> None:
        self.server.start()
        log.info("MADSci-compatible REST API on %s (OpenAPI docs at %sdocs)",
                 self.server.url, self.server.url)

    def stop(self) -> None:
        self.server.stop()


def _port(options: RunOptions) -> int:
    if options.api_port is not None:
        port: object = options.api_port
    else:
        text = os.environ.get(PORT_ENV, "").strip()
        if not text:
            return DEFAULT_PORT
        if not text.isdigit():
            raise ApiConfigError(f"{PORT_ENV}={text!r} is not a port number")
        port = int(text)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ApiConfigError(f"API port {port!r} is not a port number (0-65535)")
    return port


def allowed_origins(paths: BenchPaths, environ: Optional[Mapping[str, str]] = None
                    ) -> tuple[str, ...]:
    """Browser origins the API answers (CORS): the environment variable when it is set,
    else the ``api`` section's ``allowed_origins``; ApiConfigError for a malformed one."""
    environ = os.environ if environ is None else environ
    if ORIGINS_ENV in environ:
        origins: object = parse_origins(environ[ORIGINS_ENV])
        where = ORIGINS_ENV
    else:
        section = load_section(paths, SECTION) or {}
        origins = section.get("allowed_origins", []) if isinstance(section, dict) else None
        where = f"the {SECTION!r} section's allowed_origins"
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ApiConfigError(f"{where} must be a list of origins such as "
                                 '["http://dashboard.lab:3000"]')
    try:
        return check_origins(origins)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ApiConfigError(f"{where}: {exc}") from None


def make_component(service: BenchService, options: RunOptions) -> Optional[ApiComponent]:
    """The API component, or None when switched off (``--no-api``)."""
    if not options.api:
        return None
    host = options.api_host or os.environ.get(HOST_ENV, "").strip() or DEFAULT_HOST
    token = options.extra.get("api_token") or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    return ApiComponent(service, host, _port(options), token,
                        allowed_origins(service.paths))
