"""Benchmarks of an older revision against this checkout, run alike in the same session.

    python3 bench/compare.py --base REV [--rounds 2] [--quick] [--args NAME='--flag v' ...]
                             bench_capture bench_query bench_sync ...

Exports ``REV`` into a temporary directory (``git archive``) and runs each named benchmark
there and here with the same arguments, each tree's own ``bench/NAME.py`` importing its own
code (``PYTHONPATH`` and the working directory point at that tree). The runs interleave,
alternating which side goes first (base, current; current, base; ...), so that machine load
drifting over the session hits both sides alike. ``--quick`` passes each benchmark the small
arguments in ``QUICK_ARGS`` (accepted by the old and the new scripts alike); ``--args``
replaces them for one benchmark.

Prints one JSON: per benchmark, per numeric figure of its output (dotted path), each side's
median and run-to-run spread ((max - min) / median), the ratio current/base, which way is
better (inferred from the name: ``*_per_s``, ratio, throughput are bigger-is-better;
``*_s``, ``*_ms``, latency, stall, RSS smaller-is-better; otherwise "unknown"), and a
verdict: "worse"/"better" only when the change is larger than the larger spread, else
"within noise". Figures that measure an in-run baseline (raw sqlite3, pymongo, minio) are
marked ``baseline``: they show the machine, not our code. A benchmark missing from, or
failing in, one tree is reported with its error, not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _common import ROOT, emit, exported_tree, resolve_revision, tree_env

#: Small runs of each benchmark, with flags both the old and the new scripts accept.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_capture": ["--sequential", "300", "--batched", "5000"],
    "bench_query": ["--rows", "20000", "--repeat", "10"],
    "bench_sync": ["--values", "1000", "--value-rounds", "2", "--file-mib", "16",
                   "--file-rounds", "1", "--latency-samples", "5"],
    "bench_startup": ["--quick"],
}

_BIGGER = ("per_s", "per_sec", "throughput", "ratio", "speedup", "rate")
_SMALLER_SUFFIXES = ("_s", "_ms", "_us", "_seconds", "_mb")
_SMALLER_WORDS = ("latency", "stall", "rss", "x_baseline", "modules")
_BASELINE_WORDS = ("raw_", "baseline", "minio", "pymongo")
_SIDES = ("base", "current")


def direction(path: str) -> str:
    """Which way is better for the figure at dotted ``path``: "bigger", "smaller" or
    "unknown". A rate's name also ends in ``_s`` (``ours_per_s``), so rates are tried first."""
    leaf = path.rsplit(".", 1)[-1].lower()
    if any(word in leaf for word in _BIGGER):
        return "bigger"
    if leaf.endswith(_SMALLER_SUFFIXES) or any(word in path.lower() for word in _SMALLER_WORDS):
        return "smaller"
    return "unknown"


def is_baseline(path: str) -> bool:
    """Whether the figure times the in-run baseline (plain sqlite3, pymongo, minio), not us.
    Ratios against the baseline are ours."""
    leaf = path.rsplit(".", 1)[-1].lower()
    if "ratio" in leaf or "x_baseline" in leaf:
        return False
    return any(word in path.lower() for word in _BASELINE_WORDS)


def numeric_figures(result: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a benchmark's JSON, by dotted path (lists and booleans left out:
    lists are per-round details of a figure that is also given whole)."""
    if isinstance(result, dict):
        figures: dict[str, float] = {}
        for key, value in result.items():
            figures.update(numeric_figures(value, f"{prefix}{key}."))
        return figures
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return {prefix.rstrip("."): float(result)}
    return {}


def spread(values: list[float]) -> float:
    """Run-to-run spread: (max - min) / |median|; 0 for one value, inf around a zero median."""
    middle = statistics.median(values)
    if len(values) < 2 or max(values) == min(values):
        return 0.0
    return (max(values) - min(values)) / abs(middle) if middle else float("inf")


def compare_figure(path: str, base: list[float], current: list[float]) -> dict[str, Any]:
    """One figure's medians, spreads, ratio current/base and verdict."""
    base_median, current_median = statistics.median(base), statistics.median(current)
    ratio = current_median / base_median if base_median else None
    noise = max(spread(base), spread(current))
    better = direction(path)
    figure: dict[str, Any] = {
        "base_median": base_median, "current_median": current_median,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "base_spread": _json_number(spread(base)), "current_spread": _json_number(spread(current)),
        "better": better, "verdict": verdict(ratio, noise, better)}
    if is_baseline(path):
        figure["baseline"] = True
    return figure


def _json_number(value: float) -> float | None:
    """``value`` rounded for the report; None where JSON has no number (an infinite spread)."""
    return round(value, 3) if value != float("inf") else None


def verdict(ratio: float | None, noise: float, better: str) -> str:
    """"worse"/"better" when the ratio leaves 1 by more than the noise the way ``better``
    says, "within noise" otherwise; "unknown" without a direction or a ratio."""
    if ratio is None or better == "unknown":
        return "unknown"
    if abs(ratio - 1) <= noise:
        return "within noise"
    bigger_now = ratio > 1
    return "better" if bigger_now == (better == "bigger") else "worse"


def compare_runs(base_runs: list[dict[str, Any]],
                 current_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of the two sides' parsed outputs; figures equal in every run of both
    sides (counts, goals: the benchmark's parameters) are only named."""
    base = _by_path(base_runs)
    current = _by_path(current_runs)
    figures: dict[str, Any] = {}
    constant: list[str] = []
    for path in sorted(base.keys() & current.keys()):
        if len(set(base[path]) | set(current[path])) == 1:
            constant.append(path)
        else:
            figures[path] = compare_figure(path, base[path], current[path])
    return {"figures": figures, "constant": constant,
            "only_in_base": sorted(base.keys() - current.keys()),
            "only_in_current": sorted(current.keys() - base.keys()),
            "worse": [path for path, figure in figures.items()
                      if figure["verdict"] == "worse" and not figure.get("baseline")]}


def _by_path(runs: Iterable[dict[str, Any]]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for run in runs:
        for path, value in numeric_figures(run).items():
            values.setdefault(path, []).append(value)
    return values


def parse_output(stdout: str) -> dict[str, Any]:
    """The JSON object a benchmark printed (after any other lines it wrote first)."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError("printed no JSON")
    result, _end = json.JSONDecoder().raw_decode(stdout[start:])
    if not isinstance(result, dict):
        raise ValueError("printed JSON that is not an object")
    return result


def run_bench(tree: Path, name: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    """One run of ``tree``'s ``bench/NAME.py``: its parsed JSON, or {"error": why}."""
    script = tree / "bench" / f"{name}.py"
    if not script.is_file():
        return {"error": f"no bench/{name}.py in this tree"}
    started = time.perf_counter()
    # A session of its own, so that a run that times out is ended with the servers it started.
    process = subprocess.Popen([sys.executable, str(script), *args], cwd=tree,
                               env=tree_env(tree), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"error": f"timed out after {timeout_s:g} s"}
    if process.returncode != 0:
        return {"error": f"exit {process.returncode}: {stderr.strip()[-1500:]}"}
    try:
        return {"result": parse_output(stdout), "wall_s": round(time.perf_counter() - started, 1)}
    except ValueError as exc:
        return {"error": f"{exc}: {stdout.strip()[-500:]}"}


def imports_from(tree: Path) -> str:
    """Where a process started in ``tree`` finds ``app`` (checks each side runs its own code)."""
    done = subprocess.run([sys.executable, "-c", "import app; print(app.__file__)"], cwd=tree,
                          env=tree_env(tree), capture_output=True, text=True, check=False)
    return done.stdout.strip() or done.stderr.strip()[-300:]


def compare_bench(trees: dict[str, Path], name: str, args: list[str], rounds: int,
                  timeout_s: float) -> dict[str, Any]:
    """``rounds`` interleaved runs on each side (a side that failed is not run again)."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in _SIDES}
    errors: dict[str, str] = {}
    for round_ in range(rounds):
        for side in (_SIDES if round_ % 2 == 0 else reversed(_SIDES)):
            if side in errors:
                continue
            outcome = run_bench(trees[side], name, args, timeout_s)
            print(f"{name} {side} round {round_ + 1}: "
                  f"{outcome.get('error', str(outcome.get('wall_s')) + ' s')}", file=sys.stderr)
            if "error" in outcome:
                errors[side] = outcome["error"]
            else:
                runs[side].append(outcome["result"])
    scripts = [trees[side] / "bench" / f"{name}.py" for side in _SIDES]
    report: dict[str, Any] = {
        "args": args, "runs": {side: len(runs[side]) for side in _SIDES},
        "same_script": all(p.is_file() for p in scripts)
        and scripts[0].read_bytes() == scripts[1].read_bytes()}
    if errors:
        report["errors"] = errors
    if runs["base"] and runs["current"]:
        report.update(compare_runs(runs["base"], runs["current"]))
    return report


def bench_args(names: list[str], quick: bool, overrides: list[str]) -> dict[str, list[str]]:
    """Each benchmark's arguments: ``--args NAME=ARGS`` first, then the quick ones if asked."""
    given: dict[str, list[str]] = {}
    for override in overrides:
        name, sep, text = override.partition("=")
        if not sep:
            raise SystemExit(f"--args wants NAME='--flag value ...', not {override!r}")
        given[name] = shlex.split(text)
    return {name: given.get(name, QUICK_ARGS.get(name, []) if quick else []) for name in names}


def head_state() -> dict[str, Any]:
    """This checkout's commit, and whether its files differ from it (they are what runs)."""
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"commit": resolve_revision("HEAD"), "uncommitted_changes": bool(dirty)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="+", metavar="NAME", help="e.g. bench_capture")
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side (default 2)")
    parser.add_argument("--quick", action="store_true", help="small runs (QUICK_ARGS)")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                        help="arguments for one benchmark, e.g. bench_query='--rows 100000'")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    names = [Path(name).stem for name in args.benchmarks]
    try:
        base_commit = resolve_revision(args.base)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    arguments = bench_args(names, args.quick, args.args)
    with exported_tree(base_commit) as base_tree:
        trees = {"base": base_tree, "current": ROOT}
        result: dict[str, Any] = {
            "benchmark": "compare", "rounds": args.rounds,
            "base": {"rev": args.base, "commit": base_commit,
                     "imports_app_from": imports_from(base_tree)},
            "current": {**head_state(), "imports_app_from": imports_from(ROOT)},
            "benchmarks": {name: compare_bench(trees, name, arguments[name], args.rounds,
                                               args.timeout) for name in names}}
    result["worse"] = {name: report["worse"] for name, report in result["benchmarks"].items()
                       if report.get("worse")}
    emit(result)


if __name__ == "__main__":
    main()
