"""The process extractors run in: one JSON request per line on stdin, one answer per line
on stdout. A crash, a hang or a runaway allocation here costs one file, never capture.

Request: ``{"path": "...", "name": "<original file name>"}``; answer:
``{"fields": {"extracted.format": ...}}``, ``{"error": "..."}`` or ``{"none": true}`` (no
extractor reads this kind of file). ``--memory-mb`` caps the address space (POSIX).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from app.extract import registry
from app.extract.api import HEAD_BYTES, describe_exception, error_metadata, to_metadata


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space, so an extractor allocating without bound fails
    with MemoryError instead of taking the machine's memory (no-op where unsupported)."""
    if megabytes <= 0:
        return
    try:
        import resource
    except ImportError:  # Windows
        return
    limit = megabytes * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def answer(extractors: list[Any], path: Path) -> dict[str, Any]:
    """Extract one file (the answer sent back)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(HEAD_BYTES)
    except OSError as exc:
        return {"error": error_metadata(f"the file cannot be read: {exc}")}
    extractor = registry.choose(extractors, path, head)
    if extractor is None:
        return {"none": True}
    try:
        result = extractor.extract(path)
        if not isinstance(result, dict):
            raise TypeError(f"extract() returned {type(result).__name__}, not a dict")
        return {"fields": to_metadata(result, str(extractor.name))}
    except BaseException as exc:  # anything: the answer records it on the datapoint
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = f"{extractor.name}: {describe_exception(exc)}"
        return {"error": {**error_metadata(message),
                          "extracted.extractor": str(extractor.name)}}


def serve(stdin: TextIO, stdout: TextIO) -> None:
    extractors = registry.usable(registry.load_all())
    for line in stdin:
        request = json.loads(line)
        reply = answer(extractors, Path(request["path"]))
        stdout.write(json.dumps(reply, ensure_ascii=False) + "\n")
        stdout.flush()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=0)
    args = parser.parse_args(argv)
    limit_memory(args.memory_mb)
    if hasattr(os, "nice"):
        os.nice(10)  # background work: capture and the window come first
    # Answers get a private copy of stdout; whatever an extractor prints (from Python or
    # from a C library) goes to stderr instead of into the answers.
    sys.stdout.flush()
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
