#!/usr/bin/env bash
# Installs what zeroprune needs on a fresh Debian bookworm machine without a GPU:
# Mesa's software Vulkan driver (lavapipe) from bookworm-backports (about 4x faster than bookworm's),
# and the Rust components the checks use. Safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! dpkg -s mesa-vulkan-drivers 2>/dev/null | grep -q bpo; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && grep -q '^Suites: bookworm bookworm-updates$' "$src"; then
    $SUDO sed -i 's/^Suites: bookworm bookworm-updates$/Suites: bookworm bookworm-updates bookworm-backports/' "$src"
  fi
  $SUDO apt-get update -q
  if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1
  else
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1
  fi
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || echo "note: could not add rustfmt/clippy through rustup"
echo "setup done: $(ls /usr/share/vulkan/icd.d/ | tr '\n' ' ')"
