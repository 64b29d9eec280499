#!/usr/bin/env bash
# The diffusion denoiser against the autoregressive model on held-out synth problems with the
# body masked: each model writes the body after the prompt (signature + docstring) — the
# denoiser as a span of --max-tokens unmasked in --steps steps, the autoregressive model left to
# right — greedy, the usual stop sequences. Reports the share of prompt + body that parses
# (before any fallback), pass@1 in the sandbox, and generation speed. Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/diffusion_infill.sh --diffusion RUN --ar RUN [--problems 200]
#          [--max-tokens 64] [--steps 64] [--out DIR] [--anvil PATH]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
diffusion="" ar="" n=200 max_tokens=64 steps=64 out="" anvil=""
while [ $# -gt 0 ]; do
  case "$1" in
    --diffusion) diffusion="$2"; shift 2 ;;
    --ar) ar="$2"; shift 2 ;;
    --problems) n="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$diffusion" ] && [ -n "$ar" ] || { echo "--diffusion RUN and --ar RUN are required" >&2; exit 2; }
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
out="${out:-$(mktemp -d)}"
mkdir -p "$out"
echo "results in $out" >&2
[ -f "$out/synth/heldout.jsonl" ] || "$anvil" --quiet data synth --n-train 1 --n-heldout "$n" --seed 0 --out "$out/synth" --overwrite > /dev/null
common=(--problems "$out/synth/heldout.jsonl" --n-samples 1 --temperature 0 --max-tokens "$max_tokens"
        --seed 0 --stop-defaults --k 1)
"$anvil" --quiet eval pass-at-k "${common[@]}" --checkpoint "$diffusion" --steps "$steps" \
  --samples "$out/diffusion.jsonl" > "$out/diffusion.log"
"$anvil" --quiet eval pass-at-k "${common[@]}" --checkpoint "$ar" \
  --samples "$out/ar.jsonl" > "$out/ar.log"
python3 - "$out" "$steps" <<'PY'
import json, pathlib, re, sys
out, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
prompts = {json.loads(l)["task_id"]: json.loads(l)["prompt"]
           for l in (out / "synth" / "heldout.jsonl").read_text().splitlines()}
sys.path.insert(0, "scripts/bench")  # run from the repository root (cd above)
from python_parses import has_code, parses
print("| model | samples | parses | with code | code that parses | pass@1 | tokens/s | steps/s |")
print("|---|---|---|---|---|---|---|---|")
for name in ["diffusion", "ar"]:
    rows = [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines()]
    ok = [parses(prompts[r["task_id"]] + r["completion"]) for r in rows]
    code = [o for r, o in zip(rows, ok) if has_code(r["completion"])]
    summ = json.loads((out / f"{name}.jsonl_summary.json").read_text())
    log = (out / f"{name}.log").read_text()
    m = re.search(r"\(([\d.]+) tokens/s\)", log)
    secs = re.search(r"in ([\d.]+)s", log)
    tps = float(m.group(1)) if m else float("nan")
    sps = (len(rows) * steps / float(secs.group(1))) if (name == "diffusion" and secs) else float("nan")
    print(f"| {name} | {len(rows)} | {sum(ok)/len(rows):.3f} | {len(code)/len(rows):.3f} | "
          f"{sum(code)/max(1,len(code)):.3f} | {summ['pass_at_k'].get('pass@1', 0):.3f} | {tps:.0f} | "
          + (f"{sps:.0f}" if name == "diffusion" else "—") + " |")
PY
