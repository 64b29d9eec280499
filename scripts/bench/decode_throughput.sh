#!/usr/bin/env bash
# Batch-1 decoding speed of Anvil next to HF transformers' `generate` on the same weights, same
# threads, same machine, one after the other: greedy, KV cache, a fixed number of new tokens
# (end of sequence ignored). Prints prefill and decode tokens/s of each, the ratios, and how many
# leading greedy tokens agree (a check that both ran the same model). Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/decode_throughput.sh --checkpoint CKPT_OR_RUN [--threads N] [--tokens N]
#                                           [--prompt-bytes N] [--reps N] [--anvil PATH]
#                                           [--python PATH] [--device D]
#   --checkpoint   an Anvil checkpoint or run folder (e.g. the quickstart's run folder)
#   --threads N    threads for both (default: nproc)
#   --tokens N     new tokens per generation (default 128)
#   --prompt-bytes N  prompt = the first N bytes of Python's json/decoder.py (default 380)
#   --reps N       timed generations of each (default 3); the best of each is reported
#   --quant Q      also decode with Anvil on the checkpoint exported as Q (q8_0 or q4_0; the
#                  option repeats): the projections stay in their blocks and the int8 kernels run
#   --anvil PATH   use this binary instead of `cargo build --release`
#   --python PATH  a python3 with torch and transformers (default: ~/.cache/anvil/torchvenv)
#   --device D     cpu (default), wgpu or cuda: Anvil's --device; HF runs on cuda for either GPU
#                  device (the binary needs the matching cargo feature: --anvil)
#
# Token healing is off: HF reads the prompt as it is tokenized, and the tokens must compare.
# Anvil's decode figure is generated tokens / time after the prefill (the first token's sampling
# and every later forward); HF's is (N - 1) / (time of generate(N) - time of generate(1)).
# Prefill is one forward over the prompt in both.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="$(nproc)" tokens=128 prompt_bytes=380 reps=3 anvil="" ckpt="" quants="" device=cpu
python="$HOME/.cache/anvil/torchvenv/bin/python"
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    --prompt-bytes) prompt_bytes="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --quant) quants="$quants $2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$ckpt" ] || { echo "--checkpoint is required (see --help)" >&2; exit 2; }
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
"$python" -c "import torch, transformers, tokenizers" || { echo "no torch/transformers in $python (see --help)" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

src="$(python3 -c 'import json.decoder as d; print(d.__file__)')"
head -c "$prompt_bytes" "$src" > "$work/prompt.txt"
"$anvil" export --checkpoint "$ckpt" --format hf --out "$work/hf" >/dev/null

# The best decode and prefill tokens/s of `reps` generations on checkpoint $1, as "decode prefill".
anvil_best() {
  local best=0 best_prefill=0 d p
  for _ in $(seq "$reps"); do
    "$anvil" generate --checkpoint "$1" --prompt-file "$work/prompt.txt" --max-tokens "$tokens" \
      --ignore-eos --no-token-healing --json --threads "$threads" --report "$work/anvil.json" \
      --device "$device" \
      > "$work/anvil.out" 2>/dev/null
    read -r d p < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["decode_tokens_per_second"], r["prefill_tokens_per_second"])' "$work/anvil.json")
    best=$(python3 -c "print(max($best, $d))"); best_prefill=$(python3 -c "print(max($best_prefill, $p))")
  done
  echo "$best $best_prefill"
}
: > "$work/quant.txt"
for q in $quants; do
  "$anvil" export --checkpoint "$ckpt" --format anvil --quant "$q" --out "$work/$q" >/dev/null
  echo "$q $(anvil_best "$work/$q")" >> "$work/quant.txt"
done
# Last, so that anvil.out holds the f32 tokens compared with HF's below.
read -r best best_prefill < <(anvil_best "$ckpt")
"$python" scripts/bench/decode_throughput.py --model "$work/hf" --prompt-file "$work/prompt.txt" \
  --max-tokens "$tokens" --threads "$threads" --reps "$reps" \
  --device "$([ "$device" = cpu ] && echo cpu || echo cuda)" 2>/dev/null > "$work/hf.json"

python3 - "$work" "$best" "$best_prefill" "$threads" "$tokens" <<'PY'
import json, sys
work, dec, pre, threads, tokens = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
hf = json.load(open(f"{work}/hf.json"))
ours = json.loads(open(f"{work}/anvil.out").readline())["token_ids"]
agree = next((i for i, (a, b) in enumerate(zip(ours, hf["token_ids"])) if a != b), min(len(ours), len(hf["token_ids"])))
print(f"prompt {hf['prompt_tokens']} tokens, {tokens} new tokens, batch 1, greedy, {threads} threads, HF on {hf['device']}")
print(f"{'':16}{'prefill tok/s':>14}{'decode tok/s':>14}")
print(f"{'Anvil':16}{pre:14.0f}{dec:14.1f}")
print(f"{'HF transformers':16}{hf['prefill_tokens_per_second']:14.0f}{hf['decode_tokens_per_second']:14.1f}")
print(f"{'ratio':16}{pre / hf['prefill_tokens_per_second']:13.2f}x{dec / hf['decode_tokens_per_second']:13.2f}x")
print(f"greedy tokens identical: first {agree} of {len(ours)}")
for line in open(f"{work}/quant.txt"):
    q, d, p = line.split()
    print(f"{'Anvil ' + q:16}{float(p):14.0f}{float(d):14.1f}   decode {float(d) / dec:.2f}x Anvil f32")
PY
