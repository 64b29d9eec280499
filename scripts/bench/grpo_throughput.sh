#!/usr/bin/env bash
# GRPO steps/s of Anvil next to TRL's GRPOTrainer (PyTorch eager, fp32, transformers' generate,
# no vLLM) on the same CPU, one after the other: the same SFT model (exported to HF for TRL), the
# same problems in file order, P prompts x G completions per step, at most N new tokens, the same
# stop strings, one reward (the share of each problem's asserts that pass), beta 0 (or --beta), loss "dapo",
# advantages scaled per group, one update per generation batch, the same threads. Prints
# seconds/step (mean over the steps after the first) split into generation | reward | update, the
# steps/s ratio Anvil/TRL, and both reward curves. Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/grpo_throughput.sh --checkpoint DIR --problems JSONL [--steps N] [--prompts P]
#                                         [--group G] [--max-tokens N] [--threads N] [--png PATH]
#                                         [--json PATH] [--anvil PATH] [--python PATH]
#   --checkpoint DIR  an Anvil SFT run folder or checkpoint (e.g. from recipes/sft-synth.toml)
#   --problems JSONL  HumanEval-shaped problems: task_id, prompt, test, entry_point
#                     (e.g. checkpoints/synth/train.jsonl from `anvil data synth`)
#   --steps N         GRPO steps of each (default 10)
#   --prompts P       prompts per step (default 4)
#   --group G         completions per prompt (default 8)
#   --max-tokens N    most new tokens per completion (default 64)
#   --threads N       threads for both: tensor work and test subprocesses (default: nproc)
#   --beta B          KL coefficient for both (default 0). With 0, Anvil skips the backward of
#                     groups whose rewards are all equal (TRL runs it, with zero advantages); with
#                     B > 0 both train every row and compute a reference model's log-probs
#   --png PATH        also plot both reward curves there (e.g. docs/img/grpo_reward_curve.png)
#   --json PATH       also write both runs' per-step numbers there
#   --anvil PATH      use this binary instead of `cargo build --release`
#   --python PATH     a python3 with torch, transformers, trl and matplotlib (default:
#                     ~/.cache/anvil/torchvenv; create it with: python3 -m venv ~/.cache/anvil/torchvenv
#                     && ~/.cache/anvil/torchvenv/bin/pip install torch transformers trl matplotlib)
#
# Anvil runs first (recipes/rl-synth.toml with the overrides above, reward weights [1,0,0,0]: pass
# rate only); TRL then gets the optimizer settings of Anvil's resolved recipe (optim.lr, betas, eps,
# weight decay, grad clip, warmup, rl.temperature where present; else grpo_trl.py's defaults) so the
# reward curves are comparable. Anvil's split is its own rl/rollout_s, rl/reward_s, rl/update_s of
# metrics.jsonl; TRL's is timed by scripts/bench/grpo_trl.py (see its header). If Anvil's run
# fails, its stderr tail is printed and TRL's numbers still are.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
beta=0 ckpt="" problems="" steps=10 prompts=4 group=8 max_tokens=64 threads="$(nproc)" png="" json_out=""
anvil="" python="$HOME/.cache/anvil/torchvenv/bin/python"
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt="$2"; shift 2 ;;
    --problems) problems="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --prompts) prompts="$2"; shift 2 ;;
    --group) group="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --beta) beta="$2"; shift 2 ;;
    --png) png="$2"; shift 2 ;;
    --json) json_out="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$ckpt" ] && [ -n "$problems" ] || { echo "--checkpoint and --problems are required (see --help)" >&2; exit 2; }
ckpt="$(cd "$ckpt" && pwd)"
problems="$(cd "$(dirname "$problems")" && pwd)/$(basename "$problems")"
[ -f "$problems" ] || { echo "no problems file $problems" >&2; exit 2; }
png_abs=""; [ -z "$png" ] || png_abs="$(mkdir -p "$(dirname "$png")" && cd "$(dirname "$png")" && pwd)/$(basename "$png")"
json_abs=""; [ -z "$json_out" ] || json_abs="$(mkdir -p "$(dirname "$json_out")" && cd "$(dirname "$json_out")" && pwd)/$(basename "$json_out")"
cd "$repo"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="${CARGO_TARGET_DIR:-$repo/target}/release/anvil"
fi
"$python" -c "import torch, transformers, trl, datasets" \
  || { echo "no torch/transformers/trl/datasets in $python (see --help)" >&2; exit 2; }
[ -z "$png" ] || "$python" -c "import matplotlib" || { echo "no matplotlib in $python (see --help)" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

echo "exporting $ckpt to HF safetensors (not timed)…" >&2
"$anvil" --quiet export --checkpoint "$ckpt" --format hf --out "$work/hf" > /dev/null

echo "Anvil GRPO: $steps steps of $prompts x $group completions, $max_tokens tokens, $threads threads…" >&2
anvil_ok=1
if [ ! -f "$repo/recipes/rl-synth.toml" ]; then
  echo "no recipes/rl-synth.toml: Anvil's side is skipped" >&2; anvil_ok=0
elif ! "$anvil" --quiet train run "$repo/recipes/rl-synth.toml" model.init_from="$ckpt" \
    rl.problems="$problems" rl.prompts_per_step="$prompts" rl.group_size="$group" \
    rl.max_completion_tokens="$max_tokens" train.max_steps="$steps" train.threads="$threads" \
    rl.beta="$beta" 'reward.weights=[1.0,0.0,0.0,0.0]' 'rl.heldout=""' rl.shuffle=false output.dir="$work/runs" output.name=anvil-grpo \
    > "$work/anvil.out" 2> "$work/anvil.err"; then
  echo "Anvil's GRPO run failed; the last lines of its stderr:" >&2
  tail -n 20 "$work/anvil.err" >&2
  anvil_ok=0
fi
run="$work/runs/anvil-grpo"

# TRL gets the optimizer settings of Anvil's resolved recipe, where it has them.
"$python" - "$run/recipe.toml" > "$work/trl_opts" <<'PY'
import sys, tomllib
try:
    r = tomllib.load(open(sys.argv[1], "rb"))
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(0)
o, s, rl = r.get("optim", {}), r.get("schedule", {}), r.get("rl", {})
for flag, v in [("--beta", rl.get("beta")), ("--lr", o.get("lr")), ("--beta1", o.get("beta1")), ("--beta2", o.get("beta2")),
                ("--adam-eps", o.get("eps")), ("--weight-decay", o.get("weight_decay")),
                ("--max-grad-norm", o.get("grad_clip")), ("--warmup-steps", s.get("warmup_steps")),
                ("--temperature", rl.get("temperature")), ("--seed", r.get("train", {}).get("seed"))]:
    if v is not None:
        print(flag); print(v)
PY
mapfile -t trl_opts < "$work/trl_opts"
echo "TRL GRPOTrainer: the same, ${trl_opts[*]:-the default optimizer settings of grpo_trl.py}…" >&2
"$python" scripts/bench/grpo_trl.py --model "$work/hf" --problems "$problems" \
  --prompts-per-step "$prompts" --group-size "$group" --max-completion-tokens "$max_tokens" \
  --steps "$steps" --threads "$threads" "${trl_opts[@]}" --out "$work/trl.json" > "$work/trl.out" 2> "$work/trl.err" \
  || { echo "grpo_trl.py failed:" >&2; tail -n 30 "$work/trl.err" >&2; exit 1; }

"$python" - "$work/trl.json" "$run/metrics.jsonl" "$anvil_ok" "$json_abs" <<'PY'
import datetime, json, os, sys
trl = json.load(open(sys.argv[1]))
metrics, anvil_ok, json_out = sys.argv[2], sys.argv[3] == "1", sys.argv[4]
cfg = trl["config"]

def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")

t_steps = trl["steps"]
t_later = t_steps[1:] or t_steps
rows = {"trl": {"seconds": mean([s["seconds"] for s in t_later]),
                "generation": mean([s["generation_s"] for s in t_later]),
                "reward": mean([s["reward_s"] for s in t_later]),
                "update": mean([s["update_s"] for s in t_later]),
                "curve": {s["step"]: s["reward_mean"] for s in t_steps}}}
anvil_steps = {}
if anvil_ok and os.path.exists(metrics):
    for line in open(metrics):
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue
        if m.get("key", "").startswith("rl/"):
            anvil_steps.setdefault(int(m["step"]), {})[m["key"]] = float(m["value"])
if anvil_steps:
    order = sorted(anvil_steps)
    later = [anvil_steps[s] for s in (order[1:] or order)]
    col = lambda k: mean([s[k] for s in later if k in s])
    rows["anvil"] = {"seconds": col("rl/step_s"), "generation": col("rl/rollout_s"), "reward": col("rl/reward_s"),
                     "update": col("rl/update_s"),
                     "curve": {s: anvil_steps[s]["rl/reward_mean"] for s in order if "rl/reward_mean" in anvil_steps[s]}}
elif anvil_ok:
    print(f"(no rl/* metrics in {metrics}: Anvil's side is left out)")

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"GRPO, {cfg['prompts_per_step']} prompts x {cfg['group_size']} completions, {cfg['max_completion_tokens']} "
      f"max tokens, {cfg['steps']} steps, threads {trl['threads']}, {cpu}, {datetime.date.today()}")
print(f"TRL {trl['trl']}, transformers {trl['transformers']}, torch {trl['torch']}; "
      f"lr {cfg['lr']}, temperature {cfg['temperature']}; {cfg['parameters']} parameters")
print(f"seconds/step, mean over steps 2..{cfg['steps']}:")
print(f"  {'':8} {'s/step':>8} {'steps/s':>8}   {'generation':>10} | {'reward':>7} | {'update':>7}")
for name in ("anvil", "trl"):
    if name in rows:
        r = rows[name]
        print(f"  {name:8} {r['seconds']:8.3f} {1 / r['seconds']:8.3f}   {r['generation']:10.3f} | "
              f"{r['reward']:7.3f} | {r['update']:7.3f}")
if "anvil" in rows:
    a, t = rows["anvil"], rows["trl"]
    print(f"steps/s Anvil/TRL: {t['seconds'] / a['seconds']:.2f}x (generation {t['generation'] / a['generation']:.2f}x, "
          f"reward {t['reward'] / a['reward']:.2f}x, update {t['update'] / a['update']:.2f}x)")
print("mean reward per step:")
names = [n for n in ("anvil", "trl") if n in rows]
print("  step " + " ".join(f"{n:>7}" for n in names))
for s in sorted(set().union(*(rows[n]["curve"] for n in names))):
    print(f"  {s:4} " + " ".join(f"{rows[n]['curve'][s]:7.3f}" if s in rows[n]["curve"] else f"{'-':>7}"
                                 for n in names))
if json_out:
    with open(json_out, "w") as f:
        json.dump({"trl": trl, "anvil": {str(k): v for k, v in anvil_steps.items()},
                   "summary": {n: {k: v for k, v in r.items() if k != "curve"} for n, r in rows.items()}}, f, indent=1)
    print(f"wrote {json_out}")
PY

if [ -n "$png_abs" ]; then
  "$python" scripts/bench/grpo_plot.py --trl "$work/trl.json" --anvil "$run/metrics.jsonl" --out "$png_abs"
fi
