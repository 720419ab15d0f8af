"""FileStore.put_file vs shutil.copyfile of the same file, in the same run.

    python bench/bench_filestore.py [--size-mib 2048] [--dir DIR] [--repeat 5]

Creates a random (not sparse) file, reads it once so every run reads from the page cache,
then times, ``--repeat`` times and interleaved:

* ``copyfile``: ``shutil.copyfile`` (sendfile on Linux), no fsync: the requested baseline;
* ``copyfile_fsync``: the same plus ``fsync`` of the copy: the baseline with the same
  durability as a capture (put_file always fsyncs);
* ``put_file``: ``FileStore.put_file`` (copy + SHA-256 + fsync + rename + dir fsync).

Before each timed run the destination is removed, dirty pages are flushed (``os.sync``)
and the source is re-read. Peak RSS growth of put_file is measured in a fresh child
process (peak RSS is a process-wide high-water mark). Prints one JSON object; removes its files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, bench_dir, emit

from app.core.filestore import FileStore
from app.core.filestore.streamcopy import CHUNK_SIZE

MIB = 1024 * 1024

# Growth = peak RSS after put_file minus the RSS just before it. On Linux both come from
# /proc/self/status: a child's ru_maxrss starts at its *parent's* RSS (the kernel carries
# the forked address space's high-water mark across exec), so it would hide the growth.
CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from app.core.filestore import FileStore

def status_kib(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: the peak so far

store = FileStore(Path(sys.argv[2]))
before = status_kib("VmRSS")
blob = store.put_file(sys.argv[3])
after = status_kib("VmHWM")
store.remove(blob.sha256)
print(json.dumps({"before_kib": before, "peak_after_kib": after}))
"""


def make_random_file(path: Path, size: int) -> None:
    chunk = 64 * MIB
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(chunk, left)
            out.write(os.urandom(n))
            left -= n
        out.flush()
        os.fsync(out.fileno())


def warm(path: Path) -> None:
    """Read the file so it is in the page cache, as it is for every timed run."""
    buffer = bytearray(8 * MIB)
    with open(path, "rb", buffering=0) as source:
        while source.readinto(buffer):
            pass


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(prepare: Callable[[], None], action: Callable[[], None], source: Path) -> float:
    prepare()
    os.sync()
    warm(source)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def child_peak_rss_growth_mb(source: Path, store_root: Path) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(store_root), str(source)],
                            capture_output=True, text=True, check=True)
    figures: dict[str, int] = json.loads(result.stdout)
    return round((figures["peak_after_kib"] - figures["before_kib"]) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--dir", default=None, help="parent folder for the bench files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    size: int = args.size_mib * MIB
    work = bench_dir(args.dir)
    try:
        source = work / "source.bin"
        copy = work / "copy.bin"
        store = FileStore(work / "store")
        make_random_file(source, size)
        blob = store.put_file(source)  # learn the digest; removed before every timed run

        def no_copy() -> None:
            copy.unlink(missing_ok=True)

        def no_blob() -> None:
            store.remove(blob.sha256)

        def copy_only() -> None:
            shutil.copyfile(source, copy)

        def capture() -> None:
            store.put_file(source)

        def copy_and_fsync() -> None:
            shutil.copyfile(source, copy)
            fsync_file(copy)

        samples: dict[str, list[float]] = {"copyfile": [], "copyfile_fsync": [], "put_file": []}
        for _ in range(args.repeat):
            samples["copyfile"].append(timed(no_copy, copy_only, source))
            samples["copyfile_fsync"].append(timed(no_copy, copy_and_fsync, source))
            samples["put_file"].append(timed(no_blob, capture, source))
        no_copy()
        no_blob()
        os.sync()
        warm(source)
        rss_growth = child_peak_rss_growth_mb(source, work / "store")

        def mb_s(seconds: float) -> float:
            return round(size / seconds / 1e6, 1)

        medians = {name: statistics.median(values) for name, values in samples.items()}
        emit({
            "benchmark": "filestore_put_file",
            "size_mib": args.size_mib,
            "repeat": args.repeat,
            "chunk_mib": CHUNK_SIZE / MIB,
            "copyfile_mb_s": mb_s(medians["copyfile"]),
            "copyfile_fsync_mb_s": mb_s(medians["copyfile_fsync"]),
            "put_file_mb_s": mb_s(medians["put_file"]),
            "ratio_vs_copyfile": round(medians["copyfile"] / medians["put_file"], 3),
            "ratio_vs_copyfile_fsync": round(medians["copyfile_fsync"] / medians["put_file"], 3),
            "samples_mb_s": {name: [mb_s(s) for s in values] for name, values in samples.items()},
            "put_file_peak_rss_growth_mb": rss_growth,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
