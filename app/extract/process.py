"""The worker's handle on the extractor process (``app/extract/child.py``).

One long-lived child serves file after file; an answer that does not come within the
timeout, or a child that dies, costs that file (the error is recorded on the datapoint) and
the next file gets a fresh child.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Optional

from app.extract.api import error_metadata

log = logging.getLogger(__name__)


def child_command(memory_mb: int) -> list[str]:
    """This interpreter's ``-m app.extract.child``; in a frozen build, the ``benchdata``
    executable's hidden ``extract --serve``."""
    if getattr(sys, "frozen", False):
        name = "benchdata.exe" if sys.platform == "win32" else "benchdata"
        return [str(Path(sys.executable).with_name(name)), "extract", "--serve",
                "--memory-mb", str(memory_mb)]
    return [sys.executable, "-m", "app.extract.child", "--memory-mb", str(memory_mb)]


def _read_lines(stream: IO[str], lines: "queue.Queue[Optional[str]]") -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):  # closed under us when the child is killed
        pass
    lines.put(None)


class ExtractorProcess:
    """Runs extractions in a child process with a per-file timeout and memory cap."""

    def __init__(self, *, timeout_seconds: float, memory_mb: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._child: Optional[subprocess.Popen[str]] = None
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONIOENCODING": "utf-8"}
        child = subprocess.Popen(child_command(self.memory_mb), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, encoding="utf-8", env=env)
        self._lines = queue.Queue()
        assert child.stdout is not None
        self._reader = threading.Thread(target=_read_lines, args=(child.stdout, self._lines),
                                        name="benchdata-extract-reader", daemon=True)
        self._reader.start()
        self._child = child
        return child

    def run(self, path: Path) -> dict[str, Any]:
        """The child's answer for ``path`` (see ``app/extract/child.py``)."""
        with self._lock:
            child = self._child if self._child and self._child.poll() is None else None
            if child is None:
                self._reap()
                child = self._start()
            assert child.stdin is not None
            try:
                child.stdin.write(json.dumps({"path": str(path)}) + "\n")
                child.stdin.flush()
                line = self._lines.get(timeout=self.timeout_seconds)
            except queue.Empty:
                self._reap()
                return {"error": error_metadata(
                    f"extraction took longer than {self.timeout_seconds:g} seconds and was "
                    "stopped")}
            except OSError as exc:
                self._reap()
                return {"error": error_metadata(f"the extractor process failed: {exc}")}
            if line is None:
                code = self._reap(grace_seconds=2.0)
                return {"error": error_metadata(
                    f"the extractor process crashed (exit status {code}); the file may be "
                    "damaged or need more memory than allowed")}
            try:
                reply: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                self._reap()
                return {"error": error_metadata("the extractor process answered garbage")}
            return reply

    def _reap(self, grace_seconds: float = 0.0) -> Optional[int]:
        """Kill and wait for the child (if any); its exit status. A child that closed its
        output is given ``grace_seconds`` to exit by itself (its own status tells why)."""
        child, self._child = self._child, None
        if child is None:
            return None
        try:
            child.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        if child.poll() is None:
            child.kill()
        code = child.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)  # it reads to the end of the dead child's output
        for stream in (child.stdin, child.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return code

    def close(self) -> None:
        """Stop the child; an extraction waiting for it ends as "crashed" at once."""
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()  # wakes run() (EOF) if it is waiting, without taking its lock
        with self._lock:
            self._reap()
