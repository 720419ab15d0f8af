"""The local MADSci-compatible REST API (``create_app``, ``ApiServer``); see docs/rest-api.md."""

from app.api.app import create_app
from app.api.server import ApiConfigError, ApiServer

__all__ = ["ApiConfigError", "ApiServer", "create_app"]
