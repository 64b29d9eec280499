#!/usr/bin/env bash
# Training throughput of Anvil next to PyTorch eager on the same model, same threads, same
# machine, one after the other: a Llama-style decoder with d_model 256, 4 layers, 4 heads,
# seq 256, batch 8, vocab 8192, tied embeddings, AdamW + global-norm clipping. Prints tokens/s
# (input tokens, batch x seq per step) and peak RSS of each, and the ratio. Results:
# docs/BENCHMARKS.md.
#
# Usage: scripts/bench/train_throughput.sh [--threads N] [--steps N] [--reps N] [--anvil PATH]
#                                          [--python PATH] [--precision P] [--device D] [--markdown]
#   --threads N   threads for both (default: nproc)
#   --precision P f32 (default), bf16 or f16: Anvil's train.precision, PyTorch's torch.autocast
#                 (f16 with GradScaler)
#   --device D    cpu (default), wgpu or cuda: Anvil's train.device; PyTorch runs on cuda for
#                 either GPU device (the binary needs the matching cargo feature: --anvil)
#   --steps N     timed steps per run (default 30, after 5 untimed)
#   --reps N      runs of each, alternating (default 2); the best of each is reported
#   --anvil PATH  use this binary instead of `cargo build --release`
#   --python PATH a python3 with torch and transformers (default: ~/.cache/anvil/torchvenv;
#                 create it with: python3 -m venv ~/.cache/anvil/torchvenv &&
#                 ~/.cache/anvil/torchvenv/bin/pip install torch transformers)
#
# Anvil trains on the quickstart's token shards (built once, not timed); tokens/s is the mean of
# the trainer's own train/tokens_per_s windows after the first 5 steps, so data preparation,
# validation and checkpointing are not in the figure. PyTorch trains on random tokens of the same
# shape (the data does not change the arithmetic).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="$(nproc)" steps=30 reps=2 anvil="" python="$HOME/.cache/anvil/torchvenv/bin/python" markdown=0
precision=f32 device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --markdown) markdown=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
"$python" -c "import torch, transformers" || { echo "no torch/transformers in $python (see --help)" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

# Peak RSS of a child, in MB, appended to its JSON line.
rss() { python3 - "$@" <<'PY'
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout
print(json.dumps({"stdout": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
PY
}

echo "building the quickstart data (not timed)…" >&2
"$anvil" --quiet data pipeline recipes/quickstart.toml > /dev/null

total=$((steps + 5))
results="$work/results.jsonl"
for rep in $(seq 1 "$reps"); do
  name="bench-$rep"
  rss "$anvil" --quiet train run recipes/quickstart.toml --threads "$threads" \
      train.max_steps=$total train.log_every=5 schedule.warmup_steps=2 eval.every=0 eval.batches=1 \
      checkpoint.every=0 output.dir="$work/runs" output.name="$name" \
      train.precision="\"$precision\"" train.device="\"$device\"" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin); run = sys.argv[1]
m = [json.loads(l) for l in open(run + "/metrics.jsonl")]
tps = [x["value"] for x in m if x["key"] == "train/tokens_per_s" and x["step"] > 5]
s = json.load(open(run + "/summary.json"))
print(json.dumps({"impl": "anvil", "tokens_per_s": sum(tps) / len(tps), "peak_rss_mb": r["peak_rss_mb"], "params": s["parameters"]}))
' "$work/runs/$name" >> "$results"
  torch_device=cpu; [ "$device" = cpu ] || torch_device=cuda
  rss "$python" scripts/bench/train_throughput.py --threads "$threads" --steps "$steps" --warmup 5 \
      --precision "$precision" --device "$torch_device" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin); d = json.loads(r["stdout"]); d["peak_rss_mb"] = r["peak_rss_mb"]; print(json.dumps(d))
' >> "$results"
done

python3 - "$results" "$threads" "$markdown" "$precision" "$device" <<'PY'
import json, sys, platform, datetime, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    if r["impl"] not in best or r["tokens_per_s"] > best[r["impl"]]["tokens_per_s"]:
        best[r["impl"]] = r
a, p = best["anvil"], best["pytorch"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"threads {sys.argv[2]}, {cpu}, {datetime.date.today()}, precision {sys.argv[4]}, device {sys.argv[5]}")
for r in rows:
    print(f"  {r['impl']:8} {r['tokens_per_s']:8.0f} tokens/s  peak RSS {r['peak_rss_mb']:6.0f} MB")
print(f"best: anvil {a['tokens_per_s']:.0f} tokens/s, pytorch {p['tokens_per_s']:.0f} tokens/s "
      f"(torch {p.get('torch', '?')}) -> ratio {a['tokens_per_s'] / p['tokens_per_s']:.2f}x; "
      f"peak RSS anvil {a['peak_rss_mb']:.0f} MB, pytorch {p['peak_rss_mb']:.0f} MB; "
      f"parameters anvil {a['params']}, pytorch {p['params']}")
if sys.argv[3] == "1":
    print("\n| impl | tokens/s | peak RSS (MB) |\n|---|---:|---:|")
    for name, r in (("Anvil (Burn flex)", a), (f"PyTorch {p.get('torch', '')} eager", p)):
        print(f"| {name} | {r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    print(f"| **ratio** | **{a['tokens_per_s'] / p['tokens_per_s']:.2f}x** | |")
PY
