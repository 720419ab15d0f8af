"""The Qt-free core stays Qt-free: nothing below app/ui imports PySide6."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_FREE = [ROOT / "app" / "core", ROOT / "sync", ROOT / "app" / "service.py",
           ROOT / "app" / "client.py", ROOT / "app" / "cli.py",
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
