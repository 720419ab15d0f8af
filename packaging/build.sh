#!/usr/bin/env bash
# Build the one-folder bundle into dist/benchdata/ (run from anywhere).
#   packaging/build.sh            -> dist/benchdata/benchdata, dist/benchdata/BenchData
# Environment: PYTHON (default python3, must be 3.11+), VENV (default build/venv).
# PyInstaller does not cross-compile: build on Windows for Windows, on Linux for Linux.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/build/venv}"
cd "$ROOT"

if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/Scripts/python.exe" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"; [ -x "$PY" ] || PY="$VENV/Scripts/python.exe"

"$PY" -m pip install --upgrade pip >/dev/null
"$PY" -m pip install "$ROOT" "pyinstaller>=6.3"
"$PY" -m PyInstaller --noconfirm --clean \
  --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
  "$ROOT/packaging/benchdata.spec"

DIST="$ROOT/dist/benchdata"
echo "built $DIST ($(du -sh "$DIST" | cut -f1))"
"$DIST/benchdata" --version
