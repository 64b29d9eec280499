#!/usr/bin/env bash
# LoRA fine-tuning throughput of Anvil next to PEFT + PyTorch eager: the same Llama shape, rank
# 16, alpha 32, adapters on q,k,v,o_proj, base frozen, AdamW on the adapters, same threads, same
# machine, one after the other. Prints tokens/s (input tokens, batch x seq per step) and peak RSS
# of each and the ratio. Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/lora_throughput.sh [--size small|100m] [--threads N] [--steps N]
#                                         [--reps N] [--qlora q4_0] [--anvil PATH] [--python PATH]
#   --size small  the quickstart shape (d_model 256, 4 layers, 5.3M parameters; default)
#   --size 100m   d_model 768, 12 layers, 12 heads (91M parameters)
#   --threads N   threads for both (default: nproc)
#   --steps N     timed steps per run (default 20, after untimed ones)
#   --reps N      runs of each, alternating (default 2); the best of each is reported
#   --qlora Q     also run Anvil's QLoRA with the base in Q blocks (q8_0 or q4_0): tokens/s and
#                 peak RSS next to LoRA on the f32 base
#   --anvil PATH  use this binary instead of `cargo build --release`
#   --python PATH a python3 with torch, transformers and peft (default: ~/.cache/anvil/torchvenv;
#                 create it with: python3 -m venv ~/.cache/anvil/torchvenv &&
#                 ~/.cache/anvil/torchvenv/bin/pip install torch transformers peft)
#
# Anvil adapts a base made by one untimed training step on the quickstart's token shards (the
# base's values do not change the arithmetic); tokens/s is the mean of the trainer's own
# train/tokens_per_s windows after the first 5 steps. PEFT trains on random tokens of the same
# shape.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
size=small threads="$(nproc)" steps=20 reps=2 anvil="" qlora="" python="$HOME/.cache/anvil/torchvenv/bin/python"
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --qlora) qlora="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$size" in
  small) d=256 layers=4 heads=4 ;;
  100m) d=768 layers=12 heads=12 ;;
  *) echo "--size must be small or 100m" >&2; exit 2 ;;
esac
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
"$python" -c "import torch, transformers, peft" || { echo "no torch/transformers/peft in $python (see --help)" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
shape=(model.d_model=$d model.n_layers=$layers model.n_heads=$heads model.n_kv_heads=$heads)

# Peak RSS of a child, in MB, appended to its JSON line.
rss() { python3 - "$@" <<'PY'
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout
print(json.dumps({"stdout": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
PY
}

echo "building the quickstart data and a $size base (not timed)…" >&2
"$anvil" --quiet train run recipes/quickstart.toml "${shape[@]}" train.max_steps=1 \
  schedule.warmup_steps=1 eval.every=0 eval.batches=1 output.dir="$work/runs" output.name=base > /dev/null

total=$((steps + 5))
results="$work/results.jsonl"
for rep in $(seq 1 "$reps"); do
 for quant in none $qlora; do
  name="lora-$quant-$rep" impl=anvil extra=()
  if [ "$quant" != none ]; then impl="anvil-qlora-$quant" extra=(lora.base_quant="$quant"); fi
  rss "$anvil" --quiet train run recipes/lora-quickstart.toml --threads "$threads" \
      model.init_from="$work/runs/base" train.max_steps=$total train.log_every=5 \
      schedule.warmup_steps=2 eval.every=0 eval.batches=1 checkpoint.every=0 \
      output.dir="$work/runs" output.name="$name" "${extra[@]}" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin); run = sys.argv[1]
m = [json.loads(l) for l in open(run + "/metrics.jsonl")]
tps = [x["value"] for x in m if x["key"] == "train/tokens_per_s" and x["step"] > 5]
s = json.load(open(run + "/summary.json"))
print(json.dumps({"impl": sys.argv[2], "tokens_per_s": sum(tps) / len(tps), "peak_rss_mb": r["peak_rss_mb"],
                  "params": s["parameters"], "trainable": s["trainable_parameters"]}))
' "$work/runs/$name" "$impl" >> "$results"
 done
  rss "$python" scripts/bench/lora_throughput.py --threads "$threads" --steps "$steps" --warmup 3 \
      --d-model $d --layers $layers --heads $heads \
    | python3 -c '
import json, sys
r = json.load(sys.stdin); d = json.loads(r["stdout"]); d["peak_rss_mb"] = r["peak_rss_mb"]; print(json.dumps(d))
' >> "$results"
done

python3 - "$results" "$threads" "$size" <<'PY'
import json, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    if r["impl"] not in best or r["tokens_per_s"] > best[r["impl"]]["tokens_per_s"]:
        best[r["impl"]] = r
a, p = best["anvil"], best["peft"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"LoRA r=16 q,k,v,o, size {sys.argv[3]}, threads {sys.argv[2]}, {cpu}, {datetime.date.today()}")
for r in rows:
    print(f"  {r['impl']:18} {r['tokens_per_s']:8.0f} tokens/s  peak RSS {r['peak_rss_mb']:6.0f} MB")
print(f"best: anvil {a['tokens_per_s']:.0f} tokens/s, peft {p['tokens_per_s']:.0f} tokens/s "
      f"(torch {p.get('torch', '?')}) -> ratio {a['tokens_per_s'] / p['tokens_per_s']:.2f}x; "
      f"peak RSS anvil {a['peak_rss_mb']:.0f} MB, peft {p['peak_rss_mb']:.0f} MB; "
      f"trainable anvil {a['trainable']} of {a['params']}, peft {p['trainable']} of {p['params']}")
for impl, q in best.items():
    if impl.startswith("anvil-qlora"):
        print(f"{impl}: {q['tokens_per_s']:.0f} tokens/s ({q['tokens_per_s'] / a['tokens_per_s']:.2f}x LoRA), "
              f"peak RSS {q['peak_rss_mb']:.0f} MB = {q['peak_rss_mb'] / a['peak_rss_mb']:.2f}x LoRA's on the f32 base")
PY
