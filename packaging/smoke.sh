#!/usr/bin/env bash
# Build the one-folder bundle and smoke-test it as an instrument PC would run it.
#
#   bash packaging/smoke.sh              build (packaging/build.sh), then check dist/benchdata
#   bash packaging/smoke.sh --no-build   check the dist/benchdata that is already there
#
# Everything runs against a temporary BENCHDATA_HOME (deleted afterwards), never the real
# store, keyring or central store. Checks:
#   * the frozen `benchdata` reports the project's version;
#   * it captures a JSON value and a file, and reads both back byte for byte (value, save,
#     query); `doctor` passes on that store;
#   * the frozen service (`benchdata run`) serves the local REST API (/health, a value),
#     refuses a second service on the same store, and stops cleanly on SIGTERM;
#   * `export` writes Parquet and CSV (pyarrow inside the bundle);
#   * the frozen window (`benchdata-gui`, BENCHDATA_GUI_SMOKE=1, Qt offscreen) opens on that
#     store, shows its datapoints and exits 0.
# Then it prints the folder's size and the median start-up time (of RUNS, default 5) of the
# frozen executables beside the same commands from the build venv's Python installation.
#
# Environment: PYTHON, VENV (as build.sh), RUNS. Needs on Linux: python3 with venv, binutils
# (`objdump`, used by PyInstaller), network access to the package index (first build).
# Exit status: 0 when every check passed, 1 when one failed, 2 when the build failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/build/venv}"
RUNS="${RUNS:-5}"
DIST="$ROOT/dist/benchdata"
BUILD=1
case "${1:-}" in
  --no-build) BUILD=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac

exe_suffix=""
case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) exe_suffix=".exe" ;; esac
CLI="$DIST/benchdata$exe_suffix"
GUI="$DIST/benchdata-gui$exe_suffix"

# -- prerequisites and build ------------------------------------------------------------------
started=$(date +%s)
if [ "$(uname -s)" = "Linux" ] && ! command -v objdump >/dev/null 2>&1; then
  echo "FAIL  prerequisites: PyInstaller needs objdump on Linux: apt-get install binutils" \
       "(or dnf install binutils)" >&2
  exit 2
fi
if [ "$BUILD" = 1 ]; then
  echo "== building (packaging/build.sh) =="
  if ! bash "$ROOT/packaging/build.sh"; then
    echo "FAIL  build: packaging/build.sh failed (see above)"
    exit 2
  fi
fi
built=$(date +%s)
if [ ! -x "$CLI" ] || [ ! -x "$GUI" ]; then
  echo "FAIL  build: $CLI or $GUI is missing; run without --no-build" >&2
  exit 2
fi
PY="$VENV/bin/python"; [ -x "$PY" ] || PY="$VENV/Scripts/python.exe"
if [ ! -x "$PY" ]; then
  echo "FAIL  build: no build venv at $VENV (the timing baseline needs it)" >&2
  exit 2
fi

# -- a private, throw-away bench --------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/benchdata-smoke.XXXXXX")"
SERVICE_PID=""
cleanup() {
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill -KILL "$SERVICE_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export BENCHDATA_HOME="$WORK/home"
export QT_QPA_PLATFORM=offscreen
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring  # never the real keyring
unset BENCHDATA_MONGO_URL BENCHDATA_MONGO_DATABASE BENCHDATA_MONGO_COLLECTION \
      OBJECT_STORAGE_ENDPOINT OBJECT_STORAGE_ACCESS_KEY OBJECT_STORAGE_SECRET_KEY \
      OBJECT_STORAGE_DEFAULT_BUCKET OBJECT_STORAGE_SECURE OBJECT_STORAGE_REGION \
      BENCHDATA_API_PORT BENCHDATA_GUI_SMOKE
# The window hosts capture itself in these checks (nothing outlives them); check 7 is the
# window starting the capture service as a process of its own.
export BENCHDATA_GUI_CAPTURE=window
cd "$WORK"

RESULTS=()
FAILED=0
pass() { RESULTS+=("PASS  $1"); echo "PASS  $1"; }
fail() {
  RESULTS+=("FAIL  $1"); FAILED=$((FAILED + 1)); echo "FAIL  $1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then sed 's/^/      | /' "$2" | tail -n 25; fi
}
# json_get FILE EXPR: evaluate a Python expression over the JSON document `d` in FILE.
json_get() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1)"

# 1. version
if "$CLI" --version >"$WORK/version.out" 2>&1 && grep -q "version $version" "$WORK/version.out"; then
  pass "benchdata --version: $(head -n 1 "$WORK/version.out")"
else
  fail "benchdata --version (expected version $version)" "$WORK/version.out"
fi

# 2. capture a JSON value and read it back
value_id=""
if "$CLI" add value '{"t": 23.5, "unit": "°C", "ok": true}' --label smoke-value \
     >"$WORK/add-value.out" 2>&1; then
  value_id="$(awk '/^captured /{print $2; exit}' "$WORK/add-value.out")"
fi
if [ -n "$value_id" ] && "$CLI" value "$value_id" >"$WORK/value.json" 2>"$WORK/value.err" \
   && [ "$(json_get "$WORK/value.json" 'd == {"t": 23.5, "unit": "°C", "ok": True}')" = True ]; then
  pass "captured a JSON value and read it back ($value_id)"
else
  cat "$WORK/add-value.out" "$WORK/value.err" >"$WORK/value.log" 2>/dev/null
  fail "capture a JSON value and read it back" "$WORK/value.log"
fi

# 3. capture a file and read it back byte for byte (value to stdout, and save to a folder)
mkdir -p "$WORK/instrument" "$WORK/restored"
sample="$WORK/instrument/spectrum run 1.csv"
{ echo "wavelength,absorbance"; for i in $(seq 1 2000); do echo "$((400 + i)),0.$((i * 7 % 1000))"; done; } >"$sample"
head -c 3000000 /dev/urandom >>"$sample"
file_id=""
if "$CLI" add file "$sample" --label smoke-file --quiet >"$WORK/add-file.out" 2>&1; then
  file_id="$(awk '/^captured /{print $2; exit}' "$WORK/add-file.out")"
fi
if [ -n "$file_id" ] \
   && "$CLI" value "$file_id" >"$WORK/restored/stdout.bin" 2>"$WORK/file.err" \
   && cmp -s "$sample" "$WORK/restored/stdout.bin" \
   && "$CLI" save "$file_id" "$WORK/restored/" >>"$WORK/file.err" 2>&1 \
   && cmp -s "$sample" "$WORK/restored/spectrum run 1.csv"; then
  pass "captured a $(wc -c <"$sample" | tr -d ' ')-byte file and read it back identical ($file_id)"
else
  cat "$WORK/add-file.out" "$WORK/file.err" >"$WORK/file.log" 2>/dev/null
  fail "capture a file and read it back identical" "$WORK/file.log"
fi

# 4. query, export and doctor on that store
if "$CLI" query '{"label": {"$in": ["smoke-value", "smoke-file"]}}' --count \
     >"$WORK/query.out" 2>&1 && [ "$(tr -d '[:space:]' <"$WORK/query.out")" = 2 ]; then
  pass "query finds both datapoints"
else
  fail "query finds both datapoints" "$WORK/query.out"
fi
if "$CLI" export '{}' -o "$WORK/export.parquet" >"$WORK/export.out" 2>&1 \
   && "$CLI" export '{}' -o "$WORK/export.csv" >>"$WORK/export.out" 2>&1 \
   && [ "$(head -c 4 "$WORK/export.parquet")" = PAR1 ] && [ "$(tail -c 4 "$WORK/export.parquet")" = PAR1 ] \
   && [ "$("$PY" -c 'import csv,sys; print(len(list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))))' "$WORK/export.csv")" = 2 ]; then
  pass "export writes Parquet ($(wc -c <"$WORK/export.parquet" | tr -d ' ') bytes) and CSV (2 rows)"
else
  fail "export writes Parquet and CSV" "$WORK/export.out"
fi
if "$CLI" doctor >"$WORK/doctor.out" 2>&1; then
  pass "doctor: $(tail -n 1 "$WORK/doctor.out")"
else
  fail "doctor on the smoke store" "$WORK/doctor.out"
fi

# 5. the headless service: REST API, one service per store, clean stop on SIGTERM
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$CLI" run --no-sync --no-watch --api-port "$port" >"$WORK/run.out" 2>&1 &
SERVICE_PID=$!
# wait (up to 60 s) until the API answers, or the service has exited
"$PY" - "$port" "$SERVICE_PID" "$value_id" >"$WORK/api.out" 2>&1 <<'EOF'
import json, os, sys, time, urllib.request
port, pid, value_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            print("health:", response.status, response.read(300).decode())
            break
    except OSError as exc:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(f"the service exited before its API answered ({exc})")
        if time.monotonic() > deadline:
            sys.exit(f"no answer from {base}/health within 60 s ({exc})")
        time.sleep(0.2)
with urllib.request.urlopen(f"{base}/datapoint/{value_id}/value", timeout=10) as response:
    value = json.loads(response.read())
print("value over the API:", value)
sys.exit(0 if value == {"t": 23.5, "unit": "°C", "ok": True} else "wrong value over the API")
EOF
if [ $? -eq 0 ]; then
  pass "benchdata run serves the local REST API (/health, a value) on port $port"
else
  cat "$WORK/api.out" "$WORK/run.out" >"$WORK/api.log"
  fail "benchdata run serves the local REST API" "$WORK/api.log"
fi
if "$CLI" run --no-sync --no-watch --no-api >"$WORK/second.out" 2>&1; then
  fail "a second service on the same store is refused (it started)" "$WORK/second.out"
elif grep -q "is already running on this store" "$WORK/second.out"; then
  pass "a second service on the same store is refused"
else
  fail "a second service on the same store is refused (other error)" "$WORK/second.out"
fi
if kill -0 "$SERVICE_PID" 2>/dev/null; then
  kill -TERM "$SERVICE_PID"
  # wait (up to 60 s) for it to stop on its own
  for _ in $(seq 1 300); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$SERVICE_PID" 2>/dev/null; then
    fail "benchdata run stops on SIGTERM (still running after 60 s)" "$WORK/run.out"
  else
    wait "$SERVICE_PID"; status=$?
    if [ "$status" -eq 0 ]; then
      pass "benchdata run stops cleanly on SIGTERM (exit 0)"
    else
      fail "benchdata run stops cleanly on SIGTERM (exit $status)" "$WORK/run.out"
    fi
  fi
else
  fail "benchdata run was still running before SIGTERM" "$WORK/run.out"
fi
SERVICE_PID=""
if "$CLI" logs -n 200 >"$WORK/logs.out" 2>&1 && grep -q . "$WORK/logs.out"; then
  pass "benchdata logs shows the service's log file ($(wc -l <"$WORK/logs.out" | tr -d ' ') lines)"
else
  fail "benchdata logs shows the service's log file" "$WORK/logs.out"
fi

# 6. the desktop window, offscreen
limit=(); command -v timeout >/dev/null 2>&1 && limit=(timeout 180)  # macOS has no timeout
if BENCHDATA_GUI_SMOKE=1 "${limit[@]}" "$GUI" >"$WORK/gui.out" 2>&1 \
   && grep -q "window ready: 2 datapoint(s)" "$WORK/gui.out"; then
  pass "benchdata-gui (offscreen): $(grep "window ready" "$WORK/gui.out" | head -n 1)"
else
  fail "benchdata-gui opens offscreen, shows 2 datapoints and exits 0" "$WORK/gui.out"
fi

# 7. the window starts the frozen capture service as its own process, which outlives it
service_pid=""
if BENCHDATA_GUI_SMOKE=1 BENCHDATA_GUI_CAPTURE=service "${limit[@]}" "$GUI" \
     >"$WORK/gui-service.out" 2>&1; then
  for _ in $(seq 1 300); do
    service_pid=$(grep -o '"pid": *[0-9]*' "$BENCHDATA_HOME/data/service.lock" 2>/dev/null \
                  | grep -o '[0-9]*$' || true)
    [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null && break
    service_pid=""
    sleep 0.1
  done
fi
if [ -n "$service_pid" ]; then
  pass "benchdata-gui started the capture service (pid $service_pid), still running after the window closed"
  kill -TERM "$service_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
else
  fail "benchdata-gui starts the capture service as its own process" "$WORK/gui-service.out"
fi

# -- size and start-up time -------------------------------------------------------------------
size_h="$(du -sh "$DIST" | cut -f1)"
size_mb="$(du -sm "$DIST" | cut -f1)"
python_cli="$VENV/bin/benchdata"; [ -x "$python_cli" ] || python_cli="$VENV/Scripts/benchdata.exe"
echo
echo "== size and start-up (median of $RUNS runs each, after one warm-up) =="
echo "bundle: $DIST  $size_h ($size_mb MiB), $(find "$DIST" -type f | wc -l | tr -d ' ') files"
"$PY" - "$RUNS" "$CLI" "$GUI" "$python_cli" "$PY" <<'EOF' || fail "start-up timing"
import os, statistics, subprocess, sys, time
runs, cli, gui, python_cli, python = int(sys.argv[1]), *sys.argv[2:]
def median_s(argv, **env):
    environment = {**os.environ, **env}
    samples = []
    for attempt in range(runs + 1):  # the first run warms the disk cache, not counted
        start = time.perf_counter()
        subprocess.run(argv, env=environment, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        if attempt:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)
rows = [
    ("frozen  benchdata --version", median_s([cli, "--version"])),
    ("python  benchdata --version (venv console script)", median_s([python_cli, "--version"])),
    ("frozen  benchdata-gui, window ready -> exit", median_s([gui], BENCHDATA_GUI_SMOKE="1")),
    ("python  python -m app, window ready -> exit", median_s([python, "-m", "app"], BENCHDATA_GUI_SMOKE="1")),
]
for name, seconds in rows:
    print(f"{name:<52} {seconds:6.2f} s")
EOF

# -- summary ----------------------------------------------------------------------------------
finished=$(date +%s)
echo
echo "== summary =="
for line in "${RESULTS[@]}"; do echo "$line"; done
echo "bundle size: $size_h; build $((built - started)) s, checks $((finished - built)) s"
if [ "$FAILED" -eq 0 ]; then
  echo "SMOKE PASS"
else
  echo "SMOKE FAIL"
fi
echo "smoke: $((${#RESULTS[@]} - FAILED)) passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
