"""How long the ``benchdata`` command takes to start, against a bare interpreter.

    python bench/bench_startup.py [--repeat 15] [--quick] [--against DIR|REV]

Times, as fresh processes in the same run, interleaved so machine load hits all alike:

- ``python -c "import sqlite3"`` (the baseline: an interpreter that can open a store);
- ``benchdata --version`` (should need almost nothing beyond the baseline);
- ``benchdata list -n 1`` on a store holding one datapoint (opens the store, reads a row);
- ``python -c "import app.core.paths"`` (a core module alone must not drag in the rest).

Each command runs as ``python -m app ...`` against this checkout (``--against DIR|REV``:
also against another checkout, or a git revision exported to a temporary directory, in the
same interleaved rounds). Reports wall time and the processes' CPU time, and how many
modules each imports (``sys.modules`` at exit). Goal: each command <= 4x the baseline (p50).

The commands run with their bytecode cached, as an installed app does: the warm-up run
writes it, even when ``PYTHONDONTWRITEBYTECODE`` is set here (with it, every start compiled
the whole checkout while the baseline's stdlib stayed compiled).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from _common import ROOT, bench_dir, emit, exported_tree, percentiles_ms, tree_env

#: Prints the number of imported modules when the interpreter exits.
_COUNT_MODULES = "import atexit, sys; atexit.register(lambda: print(len(sys.modules), file=sys.stderr))"


def commands() -> dict[str, list[str]]:
    python = sys.executable
    return {
        "baseline_import_sqlite3": [python, "-c", "import sqlite3"],
        "benchdata_version": [python, "-m", "app", "--version"],
        "benchdata_list_n_1": [python, "-m", "app", "list", "-n", "1"],
        "import_app_core_paths": [python, "-c", "import app.core.paths"],
    }


def module_count(argv: list[str], env: dict[str, str]) -> int:
    """Modules imported by ``argv`` (run once more with a counting hook)."""
    if argv[1] == "-m":
        code = f"{_COUNT_MODULES}; import runpy; sys.argv = {argv[2:]!r}; " \
               f"runpy.run_module({argv[2]!r}, run_name='__main__')"
    else:
        code = f"{_COUNT_MODULES}; {argv[2]}"
    done = subprocess.run([argv[0], "-c", code], env=env, cwd=env["_CWD"], capture_output=True,
                          text=True, check=False)
    return int(done.stderr.strip().splitlines()[-1])


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    parser.add_argument("--against", help="another checkout (directory) or git revision to time alike")
    args = parser.parse_args()
    with against_tree(args.against) as against:
        measure(5 if args.quick else args.repeat, against, args.against)


@contextlib.contextmanager
def against_tree(against: str | None) -> Iterator[Path | None]:
    """The other checkout: a directory as given, or a revision exported for the run."""
    if against is None or Path(against).is_dir():
        yield Path(against).resolve() if against else None
    else:
        with exported_tree(against) as tree:
            yield tree


def measure(repeat: int, against: Path | None, against_name: str | None) -> None:
    work = bench_dir()
    trees = {"": ROOT, **({"against_": against} if against else {})}
    # A store of each checkout's own making: an older checkout refuses a newer schema.
    envs = {prefix: tree_env(tree, BENCHDATA_HOME=str(work / f"{prefix}home"))
            for prefix, tree in trees.items()}
    try:
        for prefix, tree in trees.items():
            subprocess.run([sys.executable, "-m", "app", "add", "value", "1", "--label", "x"],
                           env=envs[prefix], cwd=tree, check=True, capture_output=True)
        # Run in the checkout: `python -m`/`-c` put the working directory first on sys.path.
        runs = {(prefix if name != "baseline_import_sqlite3" else "") + name:
                (argv, {**envs[prefix], "_CWD": str(tree)})
                for prefix, tree in trees.items() for name, argv in commands().items()}
        for argv, env in runs.values():  # warm the page cache and the bytecode cache
            subprocess.run(argv, env=env, cwd=env["_CWD"], check=True, capture_output=True)
        wall_s: dict[str, list[float]] = {name: [] for name in runs}
        cpu_s: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeat):
            for name, (argv, env) in runs.items():
                start, cpu = time.perf_counter(), children_cpu_s()
                subprocess.run(argv, env=env, cwd=env["_CWD"], check=True, capture_output=True)
                wall_s[name].append(time.perf_counter() - start)
                cpu_s[name].append(children_cpu_s() - cpu)
        baseline = percentiles_ms(wall_s["baseline_import_sqlite3"])["p50_ms"]
        baseline_cpu = percentiles_ms(cpu_s["baseline_import_sqlite3"])["p50_ms"]
        result: dict[str, Any] = {"benchmark": "startup", "repeat": repeat,
                                  **({"against": against_name} if against else {})}
        for name, (argv, env) in runs.items():
            wall = percentiles_ms(wall_s[name])
            cpu = percentiles_ms(cpu_s[name])["p50_ms"]
            result[name] = {**wall, "x_baseline": round(wall["p50_ms"] / baseline, 2),
                            "cpu_p50_ms": cpu, "cpu_x_baseline": round(cpu / baseline_cpu, 2),
                            "modules": module_count(argv, env)}
        result["goal"] = "benchdata --version and list -n 1 <= 4x baseline (p50)"
        emit(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
