#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs what the tests need (a C/C++
# compiler for the tree-sitter grammars, Open MPI and libclang for the data-parallel trainer,
# Python with pyarrow and tokenizers to read our outputs), then runs every test of the workspace
# with the `mpi` feature on. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build directory across clones: a clean build on 2 cores is the slow part.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/anvil/target}"
venv="${ANVIL_TEST_VENV:-$HOME/.cache/anvil/venv}"

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v c++ >/dev/null || need_apt+=(g++)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# rsmpi builds against Open MPI's headers through bindgen (libclang); the tests start mpirun.
command -v mpirun >/dev/null || need_apt+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || need_apt+=(libopenmpi-dev)
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# A virtual environment keeps Debian's externally-managed Python untouched.
if [ ! -x "$venv/bin/python3" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
export PATH="$venv/bin:$PATH"

cargo test --workspace --locked --features mpi "$@"
