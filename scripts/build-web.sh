#!/usr/bin/env bash
# Builds the browser package: the crate for wasm32 (WebGPU backend, no CLI features; the
# wasm-release profile of Cargo.toml: LTO, one codegen unit), then
# wasm-bindgen's JavaScript glue into web/pkg. Installs the wasm target and a wasm-bindgen-cli of the
# version Cargo.lock pins if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi
want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found: ${have:-none})"
  cargo install wasm-bindgen-cli --version "$want"
fi

profile=${PROFILE:-wasm-release}
cargo build --lib --target wasm32-unknown-unknown --no-default-features --profile "$profile"
target_dir=${CARGO_TARGET_DIR:-target}
wasm-bindgen --target web --out-dir web/pkg \
  "$target_dir/wasm32-unknown-unknown/$profile/zeroprune.wasm"
echo "built web/pkg ($(du -h web/pkg/zeroprune_bg.wasm | cut -f1) of wasm)"
