#!/usr/bin/env bash
# Data-parallel overhead on one machine: the quickstart model (d_model 256, 4 layers, seq 256,
# 5.3M parameters) trained with the same global batch (16 rows a step) three ways —
#   1 process × 2 threads (batch 8, grad_accum 2),
#   2 ranks × 1 thread each under mpirun (batch 8 per rank), plain data parallel,
#   the same with ZeRO-1 (distributed.zero = 1)
# — and per step: time, tokens/s, seconds in the gradient/weight collectives and bytes each rank
# sent (the trainer's own dist/comm_s and dist/comm_bytes metrics). Then a model on paper of the
# same exchange over a 10 Gb/s and a 100 Gb/s network (scripts/bench/ddp_overhead.py).
# Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/ddp_overhead.sh [--steps N] [--reps N] [--anvil PATH] [--markdown]
#   --steps N     steps per run (default 40; the first 5 are not counted)
#   --reps N      runs of each, alternating (default 2); the best of each is reported
#   --anvil PATH  a binary built with `--features mpi` (default: cargo build --release --features mpi)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
steps=40 reps=2 anvil="" markdown=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --markdown) markdown="--markdown"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$repo"
command -v mpirun >/dev/null || { echo "no mpirun: apt install openmpi-bin libopenmpi-dev libclang-dev" >&2; exit 2; }
if [ -z "$anvil" ]; then
  cargo build --release --quiet --features mpi
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "building the quickstart data (not timed)…" >&2
"$anvil" --quiet data pipeline recipes/quickstart.toml > /dev/null

common=(train.max_steps="$steps" train.log_every=1 eval.every=0 checkpoint.every=0
        checkpoint.keep_best=false "output.dir=\"$work\"")
for rep in $(seq 1 "$reps"); do
  echo "rep $rep: 1 process × 2 threads" >&2
  "$anvil" --quiet train run recipes/quickstart.toml "${common[@]}" --threads 2 \
    train.grad_accum=2 output.name="one-$rep" > /dev/null
  for zero in 0 1; do
    echo "rep $rep: 2 ranks × 1 thread, zero=$zero" >&2
    mpirun --oversubscribe --bind-to core -np 2 "$anvil" --quiet train run recipes/quickstart.toml \
      "${common[@]}" --threads 1 distributed.zero="$zero" output.name="ddp$zero-$rep" > /dev/null
  done
done
python3 "$repo/scripts/bench/ddp_overhead.py" "$work" --skip 5 $markdown
