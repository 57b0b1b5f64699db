#!/usr/bin/env bash
# The browser tests, in headless Chromium with WebGPU on SwiftShader (no GPU needed):
#  1. the kernel tests compiled to wasm32 and run by wasm-bindgen-test (same assertions as native);
#  2. the end-to-end test of the demo page (web/tests/e2e.mjs, Playwright): DeiT-Tiny from
#     ../shared/models on real images from ../shared/data, compared with the native binary; the
#     page runs everything in the package's worker, and the test measures its main thread;
#  3. the npm package (web/tests/package.mjs): `npm pack`, installed into an empty project, its
#     README's TypeScript examples type-checked, then a real photo classified and a real sentence
#     embedded through it in Chromium, equal to the native binary.
# Installs what it needs: Debian's chromium and chromium-driver, the wasm32 target, wasm-bindgen-cli
# (the version in Cargo.lock) and playwright-core (npm). If the browser toolchain cannot be installed,
# it says so loudly and exits 0, so that a machine without it still runs the native tests.
set -uo pipefail
cd "$(dirname "$0")/.."
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}

skip() {
  printf '\n%s\n' "################################################################################"
  printf '#  BROWSER TESTS SKIPPED: %s\n' "$1"
  printf '%s\n\n' "################################################################################"
  exit 0
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  $SUDO apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
    || skip "could not install Debian's chromium and chromium-driver"
fi
rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
  || rustup target add wasm32-unknown-unknown \
  || skip "could not install the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown)"
want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  cargo install wasm-bindgen-cli --version "$want" || skip "could not install wasm-bindgen-cli $want"
fi
command -v node >/dev/null || skip "Node.js is missing (needed for the Playwright end-to-end test)"
(cd web/tests && npm install --no-audit --no-fund --silent) || skip "could not install playwright-core from npm"

set -e
echo "== clippy on the wasm32 build"
cargo clippy --target wasm32-unknown-unknown --no-default-features --lib --test kernels -- -D warnings

echo "== kernel tests in headless Chromium (wasm-bindgen-test, WebGPU on SwiftShader)"
# One binary (tests/kernels/: kernels, prune_kernels, gemm, attention), one page: the timeout is for
# the whole run, the four 1200 s that the four binaries it replaces had.
CHROMEDRIVER=$(command -v chromedriver) WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-4800} \
  cargo test --target wasm32-unknown-unknown --no-default-features --test kernels

echo "== end-to-end: the demo page against the native binary"
cargo build --release
scripts/build-web.sh
node web/tests/e2e.mjs --images "${E2E_IMAGES:-3}"

echo "== the npm package: packed, installed into an empty project, used in Chromium"
node web/tests/package.mjs
