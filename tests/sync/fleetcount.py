"""Counting what a bench asks of the central store: MongoDB commands and the documents
their answers carry (pymongo command listener), and S3 requests (a wrapper around the
minio client's one request function)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from pymongo import monitoring

from sync.central import CentralDatabase
from sync.engine import SyncEngine

#: A field every full datapoint document has and the pull's window scan never projects.
FULL_DOCUMENT_FIELD = "data_type"


class MongoCounter(monitoring.CommandListener):
    """Commands by name, and datapoint documents returned whole."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commands: Counter[str] = Counter()
        self.full_documents = 0
        self.documents = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self.lock:
            self.commands[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if isinstance(event.reply, dict) else None
        if not cursor:
            return
        batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
        with self.lock:
            self.documents += len(batch)
            self.full_documents += sum(1 for d in batch if FULL_DOCUMENT_FIELD in d)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reset(self) -> None:
        with self.lock:
            self.commands.clear()
            self.full_documents = self.documents = 0

    @property
    def total(self) -> int:
        return sum(self.commands.values())


class S3Counter:
    """S3 requests by method, counted where the minio client sends them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def wrap(self, client: Any) -> None:
        original = client._url_open

        def counted(method: str, region: str, **kwargs: Any) -> Any:
            with self.lock:
                query = ",".join(sorted(kwargs.get("query_params") or {}))
                self.requests[f"{method} {query}".strip()] += 1
            return original(method, region, **kwargs)

        client._url_open = counted

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def counted_engine(engine: SyncEngine) -> tuple[MongoCounter, S3Counter]:
    """Count everything ``engine`` asks of MongoDB and S3 from now on."""
    mongo, s3 = MongoCounter(), S3Counter()
    engine._central = CentralDatabase(engine.settings, listeners=[mongo])
    objects = engine._object_store()
    if objects is not None:
        s3.wrap(objects.client)
    return mongo, s3
