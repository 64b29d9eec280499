#!/usr/bin/env bash
# Builds Anvil with Burn's CUDA backend (`--features cuda`), after checking what that build needs
# and saying in one line what is missing.
#
# Burn 0.22's CUDA backend (cubecl) compiles kernels through LLVM, whose bundle its build script
# (`tracel-llvm-bundler`) downloads from github.com. Without network access a bare
# `cargo build --features cuda` ends in an `unwrap` panic inside that dependency's build script;
# Cargo runs every dependency's build script before any of Anvil's, so Anvil cannot intercept it
# there — hence this check, before Cargo starts.
#
# Offline: fetch the two files the error names on a machine with internet, put them where it
# says, and run this again (it sets TRACEL_LLVM_BUNDLER_SKIP_CHECKSUM_DOWNLOAD=1 for the build).
#
# Usage: scripts/build_cuda.sh [--check] [cargo build arguments…]   (default: --release)
#   --check   only check; exit 0 when the build can fetch or find the bundle
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check_only=0
if [ "${1:-}" = "--check" ]; then check_only=1; shift; fi

# What Cargo.lock's tracel-llvm-bundler (23.1.0-4) installs; update with it.
llvm="tracel-llvm-23.1.0-4"
release="https://github.com/tracel-ai/tracel-llvm/releases/download/v23.1.0-4"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64) platform=linux-AArch64 ;;
  Darwin-x86_64) platform=macos-x64 ;;
  Darwin-arm64) platform=macos-AArch64 ;;
  *) echo "error: no LLVM bundle for $(uname -s) $(uname -m) (Burn's CUDA backend)" >&2; exit 1 ;;
esac
data="${XDG_DATA_HOME:-$HOME/.local/share}"
[ "$(uname -s)" = Darwin ] && data="$HOME/Library/Application Support"
installed="$data/tracel/$llvm/.tracel-llvm-installed"
archive="$HOME/.cache/tracel/$llvm-$platform.tar.xz"
checksums="$HOME/.cache/tracel/$llvm-$platform.checksums.json"
# The host probed for a direct connection (a variable so tests can point it at nothing).
probe="${ANVIL_LLVM_PROBE_HOST:-github.com}"

reachable() {
  # Behind a proxy a direct probe says nothing: the bundler's own download decides.
  [ -n "${HTTPS_PROXY:-}${https_proxy:-}${ALL_PROXY:-}${all_proxy:-}" ] && return 0
  timeout 5 bash -c "exec 3<>/dev/tcp/$probe/443" 2> /dev/null
}

if [ -e "$installed" ]; then
  how="LLVM bundle installed at $(dirname "$installed")"
elif [ -s "$archive" ] && [ -s "$checksums" ]; then
  export TRACEL_LLVM_BUNDLER_SKIP_CHECKSUM_DOWNLOAD=1
  how="LLVM bundle from $archive (offline)"
elif reachable; then
  how="LLVM bundle to be downloaded from github.com"
else
  echo "error: --features cuda: Burn's CUDA backend needs the LLVM bundle $llvm, which its build" \
    "downloads from github.com, unreachable from here; fetch $release/$platform.tar.xz and" \
    "$release/$platform.checksums.json elsewhere, save them as $archive and $checksums, and run" \
    "scripts/build_cuda.sh again (docs/gpu.md)" >&2
  exit 1
fi
echo "cuda build: $how" >&2
[ "$check_only" = 1 ] && exit 0
cd "$repo"
[ $# -gt 0 ] || set -- --release
exec cargo build --features cuda "$@"
