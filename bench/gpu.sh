#!/usr/bin/env bash
# The real-GPU table: `zeroprune bench` at batch 1 to 64, dense and pruned at 65% of the dense FLOPs
# (the recommended policy, wpr-merge, and zero-tprune and tome beside it, in one run per model), for
# DeiT-Tiny (the trained weights in ../shared when present) and random weights of DeiT-Small and
# DeiT-Base shapes (speed needs no trained weights), then `bench --kernels`.
# With real photos (ZP_IMAGES, default ../shared/data/imagenet-samples-400), also threshold pruning on
# DeiT-Tiny (its kept counts follow the image). Writes bench/out/gpu/<model>.json, threshold.json,
# kernels.json and table.md; prints the table.
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
  # A batch that does not fit the device is an error naming the largest that does.
  "$bin" bench --model "$path" --batch "$batches" --runs "$runs" \
    --policy wpr-merge --flops 0.65 --policies zero-tprune,tome --json > "$out/$m.json"
done
images="${ZP_IMAGES:-$shared/data/imagenet-samples-400}"
rm -f "$out/threshold.json"
if [ -d "$images" ] && [[ ",$models," == *",tiny,"* ]]; then
  echo "== threshold pruning on real photos ($images)" >&2
  "$bin" bench --model "$(model_path tiny)" --images "$images" --batch "$batches" --runs "$runs" \
    --policy threshold --threshold 0.65@2,4,6,8,10 --json > "$out/threshold.json"
fi
echo "== bench --kernels" >&2
"$bin" bench --kernels --json > "$out/kernels.json"

python3 bench/gpu_table.py "$out" "${model_list[@]}"
echo "wrote $out/table.md" >&2
