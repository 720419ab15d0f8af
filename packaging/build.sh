#!/usr/bin/env bash
# Build the one-folder bundle into dist/benchdata/ (run from anywhere).
#   packaging/build.sh            -> dist/benchdata/benchdata, dist/benchdata/benchdata-gui
#   packaging/smoke.sh            builds with this script, then smoke-tests the bundle
# Environment: PYTHON (default python3, must be 3.11+), VENV (default build/venv).
# Needs: python3 with venv (Debian: python3-venv), on Linux binutils (`objdump`), and the
# package index (PyInstaller, PySide6 ...). The Python must have its shared library
# (python.org, distribution and conda builds do; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared).
# PyInstaller does not cross-compile: build on Windows for Windows, on Linux for Linux.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/build/venv}"
cd "$ROOT"
if [ "$(uname -s)" = "Linux" ] && ! command -v objdump >/dev/null 2>&1; then
  echo "error: PyInstaller needs objdump on Linux: apt-get install binutils" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/Scripts/python.exe" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"; [ -x "$PY" ] || PY="$VENV/Scripts/python.exe"

"$PY" -m pip install --upgrade pip >/dev/null
"$PY" -m pip install "$ROOT" -r "$ROOT/packaging/build-requirements.txt"
"$PY" -m PyInstaller --noconfirm --clean \
  --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
  "$ROOT/packaging/benchdata.spec"

DIST="$ROOT/dist/benchdata"
echo "built $DIST ($(du -sh "$DIST" | cut -f1))"
"$DIST/benchdata" --version
