""""Test connection": try MongoDB and the bucket with the settings on screen (no Qt).

Each check runs on its own and says exactly what worked and what did not, in words a
person can act on (the sync package's error classes already carry such messages).
Secrets never appear in a message: URLs are shown redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    what: str
    ok: bool
    detail: str


#: Test connection waits at most this long for each server.
CHECK_TIMEOUT_S = 4.0


def check_central(settings: Any) -> list[CheckResult]:
    """Check MongoDB, then object storage; never raises."""
    from sync.settings import redact_url

    quick = settings.model_copy(update={"timeout_s": CHECK_TIMEOUT_S})
    results: list[CheckResult] = []
    if not quick.mongo_configured:
        results.append(CheckResult("MongoDB", False, "no MongoDB URL given"))
    else:
        url = redact_url(quick.mongo_url.get_secret_value())
        try:
            from sync.central import CentralDatabase

            with CentralDatabase(quick) as database:
                database.ping()
                database.datapoints.estimated_document_count()
            results.append(CheckResult(
                "MongoDB", True, f"connected to {url}; database {quick.mongo_database}, "
                                 f"collection {quick.mongo_collection} readable"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results.append(CheckResult("MongoDB", False, f"{url}: {_reason(exc)}"))
    if not (quick.endpoint and quick.bucket and quick.access_key and quick.secret_key):
        missing = [name for name, value in (("endpoint", quick.endpoint), ("bucket", quick.bucket),
                                            ("access key", quick.access_key),
                                            ("secret key", quick.secret_key)) if not value]
        results.append(CheckResult("Object storage", False, "missing " + ", ".join(missing)))
    else:
        try:
            from sync.objects import ObjectStore

            with ObjectStore(quick) as objects:
                objects.check_access()
            results.append(CheckResult(
                "Object storage", True,
                f"signed in at {quick.endpoint_url} as {quick.access_key}; bucket "
                f"{quick.bucket} exists and is accessible"))
        except Exception as exc:  # noqa: BLE001
            results.append(CheckResult("Object storage", False,
                                       f"{quick.endpoint_url}: {_reason(exc)}"))
    return results


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]
