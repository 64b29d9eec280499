#!/usr/bin/env bash
# The tree transformer against the dense decoder on the quickstart corpus, side by side: the same
# corpus, tokenizer and token rows (recipes/tree-quickstart.toml's data: no FIM, tree positions
# stored), the same shape, steps, batch and schedule; only the model differs. Per seed (default
# 0 1 2), four runs: dense (recipes/quickstart.toml on that data), tree (both mechanisms),
# positions only (model.tree.bias = [false]) and bias only (model.tree.positions = false).
# Prints final validation bits per byte (mean ± half the range over seeds), parameters and
# training tokens/s, and the data step's time with tree positions. Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/tree_vs_dense.sh [--seeds "0 1 2"] [--variants "dense tree positions bias"]
#                                      [--steps N] [--anvil PATH] [--threads N]
# TREE_BENCH_DIR=DIR keeps the runs there (runs already in it are summarized too).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seeds="0 1 2" variants="dense tree positions bias" steps=200 anvil="" threads="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --variants) variants="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
work="${TREE_BENCH_DIR:-$(mktemp -d)}"
echo "runs in $work" >&2
# The dense runs take the tree recipe's data: the same cache folder, the same rows.
same_data=(data.tokenize.fim_rate=0.0 data.tokenize.ast=true data.tokenize.ast_max_path=32)
start=$(date +%s%N)
"$anvil" --quiet data pipeline recipes/tree-quickstart.toml > /dev/null
echo "data (prepare, tokenizer, tokenize with tree positions; cached if built before): $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
common=(train.max_steps="$steps" "output.dir=\"$work\"" checkpoint.every=0 checkpoint.keep_best=false --threads "$threads")
for seed in $seeds; do
  for variant in $variants; do
    case "$variant" in
      dense) args=(recipes/quickstart.toml "${same_data[@]}") ;;
      tree) args=(recipes/tree-quickstart.toml) ;;
      positions) args=(recipes/tree-quickstart.toml "model.tree.bias=[false]") ;;
      bias) args=(recipes/tree-quickstart.toml model.tree.positions=false) ;;
    esac
    [ -f "$work/$variant-$seed/summary.json" ] && continue
    echo "seed $seed: $variant" >&2
    "$anvil" --quiet train run "${args[@]}" "${common[@]}" train.seed="$seed" \
      output.name="$variant-$seed" > /dev/null
  done
done
python3 - "$work" <<'PY'
import json, pathlib, statistics, sys
work = pathlib.Path(sys.argv[1])
rows = {}
for d in sorted(work.iterdir()):
    s = d / "summary.json"
    if not s.is_file():
        continue
    variant, seed = d.name.rsplit("-", 1)
    j = json.loads(s.read_text())
    rows.setdefault(variant, []).append((int(seed), j["val_bits_per_byte"], j["tokens_per_second"], j["parameters"]))
names = {"dense": "dense (quickstart)", "tree": "tree: positions + bias", "positions": "tree: positions only", "bias": "tree: bias only"}
print("| model | val bits/byte per seed | mean ± half range | vs dense | parameters | train tokens/s |")
print("|---|---|---|---|---|---|")
dense = statistics.mean(r[1] for r in rows["dense"])
for v in ["dense", "tree", "positions", "bias"]:
    r = sorted(rows.get(v, []))
    if not r:
        continue
    bpb = [x[1] for x in r]
    m, h = statistics.mean(bpb), (max(bpb) - min(bpb)) / 2
    tps = statistics.mean(x[2] for x in r)
    per = ", ".join(f"{x:.4f}" for x in bpb)
    print(f"| {names[v]} | {per} | {m:.4f} ± {h:.4f} | {m - dense:+.4f} | {r[0][3]:,} | {tps:.0f} |")
PY
