#!/usr/bin/env bash
# The "peers" benchmarks (issue 6), in one run on this machine. See bench/README.md.
#
#   bench/peers.sh [--quick] [--runs N] [--warmup N] [--images N] [--skip-export] [--skip-cpu] [--skip-web]
#
# 1. installs what is missing: the Python packages of bench/requirements.txt (into bench/.venv, a venv that
#    sees the system site-packages, only if an import fails), the npm packages of bench/package.json (into
#    bench/node_modules) and Debian's chromium (apt-get, only if /usr/bin/chromium and $CHROMIUM are missing);
# 2. bench/export_onnx.py      -> bench/out/deit-tiny.onnx (+ .json, sample-input.f32, sample.json)
# 3. bench/torch_cpu.py        -> bench/out/torch-cpu.json  (PyTorch CPU, dense / Zero-TPrune / ToMe)
# 4. bench/ort-web/run.mjs     -> bench/out/ort-web.json    (onnxruntime-web WebGPU + WASM and our wasm build
#                                (web/pkg, built if missing) in one headless Chromium)
# 5. bench/merge.py            -> bench/out/peers.json, and prints the table.
# A failing step is recorded in bench/out/steps.json and the others still run; the exit status is non-zero.
set -uo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
OUT="$BENCH/out"
mkdir -p "$OUT"
cd "$REPO"

RUNS=20; WARMUP=3; IMAGES=256; WEB_MAX_S=150; CPU_MAX_S=120
DO_EXPORT=1; DO_CPU=1; DO_WEB=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) RUNS=3; WARMUP=1; IMAGES=32; WEB_MAX_S=30; CPU_MAX_S=20 ;;
    --runs) RUNS="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --images) IMAGES="$2"; shift ;;
    --skip-export) DO_EXPORT=0 ;;
    --skip-cpu) DO_CPU=0 ;;
    --skip-web) DO_WEB=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[peers $(date -u +%H:%M:%S)] $*" >&2; }
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

# ---- 1. dependencies ------------------------------------------------------------------------------
PY="${PYTHON:-python3}"
PYCHECK='import torch, timm, numpy, PIL, safetensors, onnx, onnxruntime'
if ! "$PY" -c "$PYCHECK" 2>/dev/null; then
  if [ ! -x "$BENCH/.venv/bin/python" ]; then
    log "creating bench/.venv (system site-packages visible)"
    "$PY" -m venv --system-site-packages "$BENCH/.venv" || { echo "python3 -m venv failed (apt-get install python3-venv?)" >&2; exit 1; }
  fi
  PY="$BENCH/.venv/bin/python"
  if ! "$PY" -c "$PYCHECK" 2>/dev/null; then
    log "pip install -r bench/requirements.txt into bench/.venv"
    "$PY" -m pip install -q --disable-pip-version-check -r "$BENCH/requirements.txt" || exit 1
  fi
fi
log "python: $PY ($("$PY" -c 'import torch, onnxruntime; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'))"

if [ "$DO_WEB" = 1 ]; then
  if [ ! -d "$BENCH/node_modules/onnxruntime-web" ] || [ ! -d "$BENCH/node_modules/playwright-core" ]; then
    log "npm ci in bench/"
    (cd "$BENCH" && npm ci --no-audit --no-fund --loglevel=error) || exit 1
  fi
  CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$CHROMIUM" ]; then
    log "installing Debian's chromium"
    $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || exit 1
    CHROMIUM=/usr/bin/chromium
  fi
  export CHROMIUM
fi

# ---- 2-4. the peers ---------------------------------------------------------------------------------
STEPS="$OUT/steps.tsv"; : > "$STEPS"
FAILED=0
step() {  # step NAME CMD...
  local name="$1"; shift
  log "$name: $*"
  local t0=$SECONDS
  "$@"
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$STEPS"
  [ $rc = 0 ] || { log "$name FAILED (exit $rc)"; FAILED=1; }
  return 0
}
# a step's old output is removed first, so that a failed step is not merged from an earlier run
[ "$DO_EXPORT" = 1 ] && rm -f "$OUT/deit-tiny.json"
[ "$DO_CPU" = 1 ] && rm -f "$OUT/torch-cpu.json"
[ "$DO_WEB" = 1 ] && rm -f "$OUT/ort-web.json"
[ "$DO_EXPORT" = 1 ] && step export_onnx "$PY" "$BENCH/export_onnx.py"
[ "$DO_CPU" = 1 ] && step torch_cpu "$PY" "$BENCH/torch_cpu.py" --runs "$RUNS" --warmup "$WARMUP" --images "$IMAGES" \
  --max-seconds "$CPU_MAX_S"
# Our own runner in the same browser needs the wasm package (web/pkg).
if [ "$DO_WEB" = 1 ] && [ ! -f "$REPO/web/pkg/zeroprune_bg.wasm" ]; then
  log "building web/pkg (scripts/build-web.sh)"
  "$REPO/scripts/build-web.sh" >&2 || log "web/pkg could not be built: the zeroprune-webgpu runner will fail"
fi
[ "$DO_WEB" = 1 ] && step ort_web node "$BENCH/ort-web/run.mjs" --runs "$RUNS" --warmup "$WARMUP" --max-seconds "$WEB_MAX_S"

"$PY" - "$STEPS" "$OUT/steps.json" <<'EOF'
import json, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
json.dump({n: {"rc": int(rc), "secs": int(s)} for n, rc, s in rows}, open(sys.argv[2], "w"), indent=1)
EOF
rm -f "$STEPS"

# ---- 5. merge ----------------------------------------------------------------------------------------
"$PY" "$BENCH/merge.py" --out-dir "$OUT" || FAILED=1
exit $FAILED
