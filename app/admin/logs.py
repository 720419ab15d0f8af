"""The service's log file: rotating, in ``paths.log_dir``, with secrets redacted.

``setup_logging(paths, level)`` is what ``benchdata run`` calls: console output as before,
plus ``benchdata.log`` in ``paths.log_dir`` (the platform's log directory, or ``logs/``
beside an explicit data folder) rotated at ``MAX_BYTES`` with ``BACKUP_COUNT`` old files
kept. The desktop window writes ``window.log`` beside it: two processes must never rotate
one file (the window may run next to the service, attached to it). Every record passes ``RedactingFilter`` first, so a password in a MongoDB URL,
or the value of anything named like a secret, never reaches the console or the file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.core.errors import is_disk_full
from app.core.paths import BenchPaths

LOG_NAME = "benchdata.log"
#: The desktop window's log (a separate file: it may run beside the service).
WINDOW_LOG_NAME = "window.log"
MAX_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 5
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "***"

#: Names whose values are secrets (keys in text, environment variables).
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_?KEY)[A-Za-z0-9_.-]*"
#: ``name=value``, ``name: value``, ``"name": "value"`` (quotes optional).
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?" + _SECRET_NAME + r"[\"']?\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}\]]+)",
    re.IGNORECASE,
)
#: ``scheme://user:password@host`` -> ``scheme://user:***@host``.
_URL_USERINFO = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?=@)")


def _secret_env_values() -> list[str]:
    """Values of environment variables named like secrets (long enough to be specific)."""
    pattern = re.compile(_SECRET_NAME + "$", re.IGNORECASE)
    values = [value for name, value in os.environ.items()
              if pattern.fullmatch(name) and len(value) >= 6]
    url = os.environ.get("BENCHDATA_MONGO_URL")
    if url:
        match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:([^@\s/]+)@", url)
        if match and len(match.group(1)) >= 4:
            values.append(match.group(1))
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, extra_secrets: list[str] | None = None) -> str:
    """``text`` with URL passwords, secret-named values and known secret values masked."""
    text = _URL_USERINFO.sub(lambda m: m.group("prefix") + REDACTED, text)

    def mask(match: re.Match[str]) -> str:
        value = match.group("value")
        quote = value[0] if value[:1] in "\"'" and len(value) > 1 else ""
        return f"{match.group('key')}{quote}{REDACTED}{quote}"

    text = _KEY_VALUE.sub(mask, text)
    for secret in extra_secrets if extra_secrets is not None else _secret_env_values():
        if secret and secret != REDACTED:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) with secrets masked."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets = _secret_env_values()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gets logged
            message = str(record.msg)
        cleaned = redact(message, self._secrets)
        record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        return True


def log_file(paths: BenchPaths, name: str = LOG_NAME) -> Path:
    return paths.log_dir / name


class _RotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The log file; on a full disk a record is dropped quietly (the console still has
    it) instead of a "Logging error" traceback on stderr for every line."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:  # opened on the first record (delay=True), maybe later
            try:
                Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if error is not None and is_disk_full(error):
            return
        super().handleError(record)


def setup_logging(paths: BenchPaths, level: str | int = "INFO", *, console: bool = True,
                  max_bytes: int = MAX_BYTES, backup_count: int = BACKUP_COUNT,
                  name: str = LOG_NAME) -> logging.Handler:
    """Route the root logger to the rotating file (and the console); returns the file handler.

    Idempotent: handlers it installed before are replaced, not duplicated.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_benchdata", False):
            root.removeHandler(handler)
            handler.close()
    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        # Logged to the console meanwhile; the file handler opens it when it can.
    formatter = logging.Formatter(FORMAT)
    redacting = RedactingFilter()
    file_handler = _RotatingFileHandler(
        log_file(paths, name), maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8",
        delay=True)
    handlers: list[logging.Handler] = [file_handler]
    if console:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
        handler._benchdata = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return file_handler


def teardown_logging() -> None:
    """Remove and close the handlers ``setup_logging`` installed (tests, the GUI)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_benchdata", False):
            root.removeHandler(handler)
            handler.close()


def tail(path: Path, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of ``path`` (read backwards in blocks; big logs are cheap)."""
    if lines <= 0 or not path.exists():
        return []
    block = 64 * 1024
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:]


def follow(path: Path, *, poll_s: float = 0.5, stop: Any = None) -> Iterator[str]:
    """Yield lines appended to ``path`` (from its current end), across rotations.

    ``stop``: an object with ``is_set()`` (a threading.Event) to end the loop; else forever.
    """
    handle = None
    inode = None
    at_start = True  # only the file as it is now is skipped; a rotated-in one is read whole
    try:
        while stop is None or not stop.is_set():
            if handle is None:
                if path.exists():
                    handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                    if at_start:
                        handle.seek(0, os.SEEK_END)
                    at_start = False
                    inode = os.fstat(handle.fileno()).st_ino
                else:
                    at_start = False
                    time.sleep(poll_s)
                    continue
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
                continue
            try:
                rotated = os.stat(path).st_ino != inode or os.stat(path).st_size < handle.tell()
            except OSError:
                rotated = True
            if rotated:
                handle.close()
                handle = open(path, "r", encoding="utf-8", errors="replace") \
                    if path.exists() else None
                inode = os.fstat(handle.fileno()).st_ino if handle else None
                continue
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()
