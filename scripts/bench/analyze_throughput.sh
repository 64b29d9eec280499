#!/usr/bin/env bash
# Static-analysis throughput: `anvil reward analyze --format json` (security findings, complexity,
# maintainability, lints and license in one pass) next to what it replaces, `bandit -r -f json -q`
# + `radon cc -j` + `radon mi -j`, over the same tree (by default the local Python standard
# library without site-packages), on the same machine, one after the other. Prints files/s of
# Anvil, of each Python tool and of the three together, and the ratio of Anvil's files/s to the
# three's combined (goal >= 20x). Results: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/analyze_throughput.sh [--reps N] [--threads N] [--root DIR]
#                                            [--exclude NAMES] [--anvil PATH] [--venv DIR] [--keep]
#   --reps N      timed runs of each tool, Anvil and the Python tools alternating (default 2);
#                 the best run of each is reported
#   --threads N   RAYON_NUM_THREADS for Anvil (default: nproc); bandit and radon are one process
#   --root DIR    the tree to analyze (default: python3's sysconfig stdlib); its top-level
#                 directories and *.py files are passed to every tool, site-packages,
#                 __pycache__ and hidden entries left out
#   --exclude NAMES more top-level entries to leave out, comma-separated: `pydoc_data` drops
#                 pydoc_data/topics.py, one 750 kB dict of strings on which `radon mi` alone
#                 spends most of its time (minutes)
#   --anvil PATH  use this binary instead of `cargo build --release`
#   --venv DIR    where bin/bandit (1.9.4) and bin/radon (6.0.1) are (default ~/.cache/anvil/venv)
#   --keep        keep the work directory (outputs, results.jsonl) and print where it is
#
# Every tool writes its JSON to a file (not a pipe), and the files a tool analyzed are counted
# from its own output: Anvil's `totals.files`, bandit's per-file metrics plus its errors, radon's
# keys. bandit exits 1 when it finds issues, so exit codes are logged, not checked; an output that
# is not JSON fails the run. Without the CLI subcommand, the same measurement of the library:
#   cargo test --release -p anvil-analyze --test report -- --ignored --nocapture
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
helper="$repo/scripts/bench/analyze_throughput.py"
orig_args=("$@")
reps=2 threads="" root="" exclude="" anvil="" venv="$HOME/.cache/anvil/venv" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    --exclude) exclude="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*|0) echo "--reps takes a positive integer" >&2; exit 2 ;; esac
log() { echo "[bench] $*" >&2; }

nproc_="$(nproc)"
export RAYON_NUM_THREADS="${threads:-$nproc_}"

if [ -z "$anvil" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/anvil/target}"
  log "building the release binary (cargo build --release)"
  (cd "$repo" && cargo build --release --locked --quiet --bin anvil)
  anvil="$CARGO_TARGET_DIR/release/anvil"
fi
[ -x "$anvil" ] || { echo "no executable anvil at $anvil" >&2; exit 1; }
for tool in bandit radon; do
  [ -x "$venv/bin/$tool" ] || { echo "no $venv/bin/$tool (pip install bandit==1.9.4 radon==6.0.1)" >&2; exit 2; }
done
"$venv/bin/bandit" --version | grep -q '^bandit 1.9.4' || log "warning: not bandit 1.9.4: $("$venv/bin/bandit" --version | head -1)"
[ "$("$venv/bin/radon" --version)" = 6.0.1 ] || log "warning: not radon 6.0.1: $("$venv/bin/radon" --version)"

[ -n "$root" ] || root="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
[ -d "$root" ] || { echo "no directory $root" >&2; exit 2; }
mapfile -d '' paths < <(python3 "$helper" paths "$root" --exclude "$exclude")
[ "${#paths[@]}" -gt 0 ] || { echo "nothing to analyze in $root" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/anvil-bench-analyze.XXXXXX")"
if [ "$keep" = 1 ]; then trap 'log "kept $work"' EXIT; else trap 'rm -rf "$work"' EXIT; fi
results="$work/results.jsonl"
: >"$results"
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

timed() { # tool rep -- cmd...   (stdout to $work/<tool>.<rep>.json)
  local tool="$1" rep="$2"; shift 3
  python3 "$helper" timed --tool "$tool" --rep "$rep" --out "$work/$tool.$rep.json" \
    --results "$results" -- "$@"
}
run_anvil() {
  timed anvil "$1" -- "$anvil" reward analyze "${paths[@]}" --format json
}
run_python() {
  timed bandit "$1" -- "$venv/bin/bandit" -r -f json -q "${paths[@]}"
  timed radon_cc "$1" -- "$venv/bin/radon" cc -j "${paths[@]}"
  timed radon_mi "$1" -- "$venv/bin/radon" mi -j "${paths[@]}"
}
for ((r = 1; r <= reps; r++)); do
  log "rep $r/$reps (load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'))"
  # Alternating the order spreads drift in machine load over both sides.
  if ((r % 2)); then run_anvil "$r"; run_python "$r"; else run_python "$r"; run_anvil "$r"; fi
done

echo "command: scripts/bench/analyze_throughput.sh ${orig_args[*]}"
python3 "$helper" report --results "$results" --root "$root" --exclude "$exclude" --threads "$RAYON_NUM_THREADS" \
  --nproc "$nproc_" --load-before "$load_before" --anvil-version "$("$anvil" --version 2>&1 | head -1)"
