#!/usr/bin/env bash
# Generation from the tree transformer against the dense decoder, on the runs of
# scripts/bench/tree_vs_dense.sh (TREE_BENCH_DIR): per run, sampled completions of the HumanEval
# prompts and of synth held-out prompts (fixed seed, temperature and budget, the usual stop
# sequences), and the share of prompt + completion that Python's own parser accepts; then decode
# tokens/s of one long greedy sample and of 8 samples at once, the runs of seed 0 alone.
# Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/tree_generation.sh --runs DIR [--seeds "0 1 2"] [--variants "dense tree bias"]
#          [--n-samples 4] [--temperature 0.2] [--max-tokens 64] [--synth 200] [--anvil PATH]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="" seeds="0 1 2" variants="dense tree bias" n=4 temp=0.2 max_tokens=64 synth=200 anvil=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --variants) variants="$2"; shift 2 ;;
    --n-samples) n="$2"; shift 2 ;;
    --temperature) temp="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --synth) synth="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$runs" ] || { echo "--runs DIR: the folder of scripts/bench/tree_vs_dense.sh's runs" >&2; exit 2; }
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
out="$runs/generation"
mkdir -p "$out"
[ -f "$out/synth/heldout.jsonl" ] || "$anvil" --quiet data synth --n-train 1 --n-heldout "$synth" --seed 0 --out "$out/synth" --overwrite > /dev/null
gunzip -c data/humaneval/HumanEval.jsonl.gz > "$out/humaneval.jsonl"
for seed in $seeds; do
  for variant in $variants; do
    run="$runs/$variant-$seed"
    [ -d "$run" ] || { echo "no run $run" >&2; exit 1; }
    for set in humaneval synth; do
      problems="$out/humaneval.jsonl"; [ "$set" = synth ] && problems="$out/synth/heldout.jsonl"
      samples="$out/$variant-$seed-$set.jsonl"
      [ -f "$samples" ] && continue
      echo "$variant-$seed: $set" >&2
      "$anvil" --quiet eval pass-at-k --problems "$problems" --checkpoint "$run" \
        --n-samples "$n" --temperature "$temp" --max-tokens "$max_tokens" --seed 0 \
        --stop-defaults --k 1 --samples "$samples" > /dev/null
    done
  done
done
# Decode speed, seed 0: one greedy sample of 256 tokens, then 8 samples at once.
prompt="$out/prompt.py"
python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['prompt'], end='')" "$out/humaneval.jsonl" > "$prompt"
for variant in $variants; do
  for batch in 1 8; do
    report="$out/decode-$variant-$batch.json"
    for rep in warm measure; do
      "$anvil" generate --checkpoint "$runs/$variant-0" --prompt-file "$prompt" --max-tokens 256 \
        --ignore-eos -n "$batch" --temperature 0.8 --seed 1 --report "$report" > /dev/null
    done
  done
done
python3 - "$out" "$variants" "$seeds" <<'PY'
import json, pathlib, statistics, sys
out, variants, seeds = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
prompts = {}
for f in [out / "humaneval.jsonl", out / "synth" / "heldout.jsonl"]:
    for line in f.read_text().splitlines():
        p = json.loads(line)
        prompts[p["task_id"]] = p["prompt"]
sys.path.insert(0, "scripts/bench")  # run from the repository root (cd above)
from python_parses import has_code, parses
print("| model | set | parse, seeds " + " / ".join(seeds) + " | mean | with code | code that parses | pass@1 |")
print("|---|---|---|---|---|---|---|")
for v in variants:
    for s in ["humaneval", "synth"]:
        shares, code, code_ok, passes = [], [], [], []
        for seed in seeds:
            rows = [json.loads(l) for l in (out / f"{v}-{seed}-{s}.jsonl").read_text().splitlines()]
            ok = [parses(prompts[r["task_id"]] + r["completion"]) for r in rows]
            shares.append(sum(ok) / len(rows))
            with_code = [o for r, o in zip(rows, ok) if has_code(r["completion"])]
            code.append(len(with_code) / len(rows))
            code_ok.append(sum(with_code) / max(1, len(with_code)))
            summ = json.loads((out / f"{v}-{seed}-{s}.jsonl_summary.json").read_text())
            passes.append(summ["pass_at_k"].get("pass@1", 0.0))
        m = statistics.mean
        print(f"| {v} | {s} ({len(rows)}/seed) | " + " / ".join(f"{x:.3f}" for x in shares)
              + f" | {m(shares):.3f} | {m(code):.3f} | {m(code_ok):.3f} | {m(passes):.3f} |")
print()
print("| model | decode tok/s, 1 sample | 8 samples | prefill tok/s (1) |")
print("|---|---|---|---|")
for v in variants:
    r = {b: json.loads((out / f"decode-{v}-{b}.json").read_text()) for b in (1, 8)}
    print(f"| {v} | {r[1]['decode_tokens_per_second']:.0f} | {r[8]['decode_tokens_per_second']:.0f} "
          f"| {r[1]['prefill_tokens_per_second']:.0f} |")
PY
