#!/usr/bin/env bash
# Builds the npm package `zeroprune` into web/pkg: the crate for wasm32 (WebGPU backend, no CLI
# features; the wasm-release profile of Cargo.toml: LTO, one codegen unit), wasm-bindgen's
# JavaScript glue and TypeScript declarations (zeroprune.js, zeroprune.d.ts: types generated from
# the Rust types by tsify), then the package's own JavaScript from web/package/ (the worker, its
# proxy, model files by URL kept across visits) and its package.json, whose version is the crate's.
# `npm pack web/pkg` makes the tarball. Installs the wasm target and a wasm-bindgen-cli of the
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
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg \
  "$target_dir/wasm32-unknown-unknown/$profile/zeroprune.wasm"
cp web/package/*.js web/package/index.d.ts web/package/README.md web/pkg/
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
sed "s/\"version\": \"[^\"]*\"/\"version\": \"$version\"/" web/package/package.json > web/pkg/package.json
echo "built web/pkg: the npm package zeroprune $version ($(du -h web/pkg/zeroprune_bg.wasm | cut -f1) of wasm)"
