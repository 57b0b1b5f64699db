#!/usr/bin/env bash
# The real-GPU table: `zeroprune bench` at batch 1 to 64, dense and pruned at 65% of the dense FLOPs
# (the recommended policy, wpr-merge, and zero-tprune and tome beside it, in one run per model), for
# DeiT-Tiny (the trained weights in ../shared when present) and random weights of DeiT-Small and
# DeiT-Base shapes (speed needs no trained weights), then `bench --kernels`.
# Writes bench/out/gpu/<model>.json, kernels.json and table.md; prints the table.
#
#   bench/gpu.sh [--batches 1,8,16,32,64] [--runs 10] [--models tiny,small,base] [--quick]
#
# --quick: batches 1,8, 2 runs, tiny only (a smoke run that finishes on a CPU adapter).
# Any adapter works (WGPU_BACKEND / WGPU_ADAPTER_NAME choose it); the table names the one used.
set -euo pipefail
cd "$(dirname "$0")/.."

batches=1,8,16,32,64
runs=10
models=tiny,small,base
while [ $# -gt 0 ]; do
  case "$1" in
    --batches) batches="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --quick) batches=1,8; runs=2; models=tiny; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

shared="${ZP_SHARED:-../shared}"
out=bench/out/gpu
mkdir -p "$out"
# ZP_BIN: a zeroprune binary built elsewhere (a GPU machine without cargo); else the release build.
bin="${ZP_BIN:-target/release/zeroprune}"
if [ -z "${ZP_BIN:-}" ] && { [ ! -x "$bin" ] || [ -n "$(find src shaders Cargo.toml -newer "$bin" -print -quit)" ]; }; then
  cargo build --release --quiet
fi

model_path() {
  case "$1" in
    tiny) if [ -f "$shared/models/deit-tiny-patch16-224/model.safetensors" ]; then
            echo "$shared/models/deit-tiny-patch16-224"
          else
            echo random:deit-tiny
          fi ;;
    small) echo random:deit-small ;;
    base) echo random:deit-base ;;
    *) echo "bench/gpu.sh: unknown model '$1' (tiny, small, base)" >&2; exit 2 ;;
  esac
}

IFS=, read -ra model_list <<< "$models"
for m in "${model_list[@]}"; do
  path=$(model_path "$m")
  echo "== $m ($path): batches $batches, $runs runs" >&2
  # A batch that does not fit the device is reported by bench itself; the others still run.
  "$bin" bench --model "$path" --batch "$batches" --runs "$runs" \
    --policy wpr-merge --flops 0.65 --policies zero-tprune,tome --json > "$out/$m.json"
done
echo "== bench --kernels" >&2
"$bin" bench --kernels --json > "$out/kernels.json"

python3 - "$out" "${model_list[@]}" <<'PY'
import json, sys, os
out, models = sys.argv[1], sys.argv[2:]
lines = []
adapter = None
for m in models:
    d = json.load(open(os.path.join(out, f"{m}.json")))
    adapter = d["adapter"]
    lines.append(f"\n**DeiT-{m.capitalize()}**\n")
    lines.append("| batch | policy | latency ms | spread | images/s | FLOPs ratio | speedup | pruning share |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in d["results"]:
        lines.append(
            f"| {r['batch']} | {r['policy']} | {r['latency_ms']:.2f} | {r['spread_pct']:.0f}% | "
            f"{r['images_per_s']:.1f} | {r['flops_ratio']:.3f} | {r['speedup']:.2f}x | "
            f"{max(0.0, 100 * r['prune_overhead_share']):.1f}% |")
k = json.load(open(os.path.join(out, "kernels.json")))
lines.append("\n**Kernels** (`bench --kernels`)\n")
lines.append("| kernel | shape | ms | GFLOP/s | vs baseline |")
lines.append("|---|---|---:|---:|---:|")
for r in k["results"]:
    lines.append(f"| {r['kernel']} | {r['shape']} | {r['ms']:.3f} | {r['gflops_per_s']:.1f} | {r['vs_baseline']:.2f}x |")
text = f"Adapter: {adapter}\n" + "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
PY
echo "wrote $out/table.md" >&2
