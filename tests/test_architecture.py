"""The layering holds: import-linter's contracts (pyproject.toml, DEVELOPING.md), Qt only in
app/ui, and the command line starts without loading what its command does not need."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_FREE = [ROOT / "app" / "core", ROOT / "sync", ROOT / "app" / "service.py",
           ROOT / "app" / "staging.py", ROOT / "app" / "central_access.py",
           ROOT / "app" / "client.py", ROOT / "app" / "cli.py", ROOT / "app" / "commands",
           ROOT / "app" / "capture_queue.py"]


def _python_files() -> list[Path]:
    files: list[Path] = []
    for place in QT_FREE:
        if place.is_file():
            files.append(place)
        elif place.is_dir():
            files.extend(place.rglob("*.py"))
    return files


def test_core_sources_do_not_import_qt() -> None:
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] in {"PySide6", "shiboken6", "PyQt5", "PyQt6"} for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_importing_the_public_api_loads_no_qt() -> None:
    code = "import sys, app, app.cli, app.service; print(any(m.startswith('PySide6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: the layers and Qt only in app.ui
    (a plain pytest run catches a broken layer, not only .ci/run)."""
    result = _run("import sys; from importlinter.cli import lint_imports_command; "
                  "sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_core_module_and_the_version_load_neither_client_nor_store() -> None:
    """`import app.core.x` and `benchdata --version` stay cheap (app/__init__.py is lazy)."""
    heavy = ("app.client", "app.service", "app.core.store", "sqlalchemy", "pydantic",
             "sync", "fastapi", "PySide6")
    for code in ("import app.core.paths",
                 "import sys; sys.argv = ['benchdata', '--version']; import runpy; "
                 "runpy.run_module('app', run_name='__main__')"):
        result = _run(f"import atexit, sys; atexit.register(lambda: print(sorted("
                      f"m for m in sys.modules if m.split('.')[0] in {heavy!r} or m in "
                      f"{heavy!r}), file=sys.stderr)); {code}")
        assert result.stderr.strip().splitlines()[-1] == "[]", (code, result.stderr[-2000:])


def test_the_public_names_still_import_from_app() -> None:
    import app

    for name in app.__all__:
        assert getattr(app, name) is not None, name
    assert app.DataClient.__module__ == "app.client"


#: SQL that reads or writes the datapoints table (the store's table).
_DATAPOINTS_SQL = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+datapoints\b", re.IGNORECASE)
#: Sync modules that still write their own SQL on datapoints; issue 17 moves it into
#: app/core. Shrink this list, never grow it.
_DATAPOINTS_SQL_ALLOWED: set[str] = set()


def test_only_the_core_writes_sql_on_datapoints() -> None:
    """The store owns its table: every other module asks app/core for rows, counts or
    states instead of querying ``datapoints`` itself."""
    offenders = []
    for place in (ROOT / "app", ROOT / "sync"):
        for path in sorted(place.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("app/core/") or rel in _DATAPOINTS_SQL_ALLOWED:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _DATAPOINTS_SQL.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == [], "SQL on datapoints outside app/core:\n" + "\n".join(offenders)


#: A module over this many lines mixes concepts again (issue 17).
MAX_MODULE_LINES = 600


def _module_lines() -> dict[str, int]:
    return {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
            for place in (ROOT / "app", ROOT / "sync") for path in sorted(place.rglob("*.py"))}


def test_no_module_in_app_or_sync_mixes_concepts() -> None:
    """Every module of app/ and sync/ stays at most MAX_MODULE_LINES long (issue 17: one
    concept per module)."""
    lines = _module_lines()
    too_big = {rel: count for rel, count in lines.items()
               if count > MAX_MODULE_LINES}
    assert not too_big, f"split these by concept (at most {MAX_MODULE_LINES} lines): {too_big}"


#: The real sync backends and the error classifiers they use: the only sync modules that
#: import the storage SDKs; the rest of sync works on ``sync.backends``' protocols.
_SDK_USERS = {"sync/s3.py", "sync/central.py", "sync/faults.py"}
_SDK_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:minio|pymongo|bson)\b", re.MULTILINE)


def test_only_the_real_backends_import_the_storage_sdks() -> None:
    offenders = [rel for path in sorted((ROOT / "sync").rglob("*.py"))
                 if (rel := path.relative_to(ROOT).as_posix()) not in _SDK_USERS
                 and _SDK_IMPORT.search(path.read_text(encoding="utf-8"))]
    assert offenders == [], f"use sync.backends instead of minio/pymongo in: {offenders}"
