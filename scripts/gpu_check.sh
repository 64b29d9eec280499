#!/usr/bin/env bash
# The GPU path checked for real on Burn's wgpu backend: builds Anvil with `--features wgpu` and
# runs tests/gpu_wgpu.rs (cpu vs wgpu logits and training losses, checkpoints moving between
# devices). Without a GPU it uses Mesa's lavapipe, a software Vulkan device, which it installs
# on Debian/Ubuntu when missing. Not part of .ci/run: the wgpu stack's build alone would take the
# clean CI run past its 30 minutes.
#
# Usage: scripts/gpu_check.sh            (CARGO_TARGET_DIR is honoured; default target-wgpu/)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
if ! ls /usr/share/vulkan/icd.d/*.json > /dev/null 2>&1; then
  echo "no Vulkan driver: installing Mesa's (lavapipe is its software device)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q mesa-vulkan-drivers libvulkan1 > /dev/null
fi
# wgpu's Vulkan loader wants a runtime dir (absent in containers and CI shells).
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="$(mktemp -d)"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-wgpu}"
cargo test --locked --features wgpu --test gpu_wgpu -- --nocapture
