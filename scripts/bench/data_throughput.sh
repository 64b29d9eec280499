#!/usr/bin/env bash
# Throughput of the data pipeline (`anvil data prepare` + `anvil data tokenize`, MB/s of source)
# next to the raw encode throughput of the same tokenizer through the `tokenizers` Python binding
# (`encode_batch`) on the same files, in one run. Target: the whole pipeline at >= 0.7x the speed
# of tokenization alone. Results and how to read them: docs/BENCHMARKS.md.
#
# Usage: scripts/bench/data_throughput.sh [--reps N] [--markdown] [--threads N] [--anvil PATH]
#                                         [--source SRC] [--langs LANGS] [--keep]
#   --reps N      timed repetitions, anvil and Python alternating (default 3); median and min shown
#   --markdown    also print the table as Markdown, ready to paste into docs/BENCHMARKS.md
#   --threads N   RAYON_NUM_THREADS for anvil and for tokenizers alike (default: nproc)
#   --anvil PATH  use this binary instead of building one (`cargo build --release`)
#   --source SRC  what `anvil data prepare --source` reads (default python-stdlib: the local
#                 python3's standard library)
#   --langs LANGS languages kept (default python)
#   --keep        keep the work directory (results.jsonl, logs) and print where it is
#
# Setup, not timed: build, one `data prepare`, `tokenizer train --max-mb 16` on it. Then per rep:
# `data prepare` into a fresh directory, `data tokenize` of that corpus (plain, then with
# --fim-rate 0.5 --ast), and the Python reference (fresh tokenizer per call, texts read from the
# corpus shards before the clock starts). Even reps run Python first so drift hits both sides.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bench_py="$repo/scripts/bench/data_throughput.py"
orig_args=("$@")

reps=3 markdown=() threads="" anvil="" source="python-stdlib" langs="python" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --markdown) markdown=(--markdown); shift ;;
    --threads) threads="$2"; shift 2 ;;
    --anvil) anvil="$2"; shift 2 ;;
    --source) source="$2"; shift 2 ;;
    --langs) langs="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*|0) echo "--reps takes a positive integer" >&2; exit 2 ;; esac

nproc_="$(nproc)"
# The same thread count for both sides: anvil's rayon pool and the rayon pool inside tokenizers.
export RAYON_NUM_THREADS="${threads:-$nproc_}"
export TOKENIZERS_PARALLELISM=true

log() { echo "[bench] $*" >&2; }

# --- the binary ---------------------------------------------------------------------------------
if [ -z "$anvil" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/anvil/target}"
  log "building the release binary (cargo build --release)"
  (cd "$repo" && cargo build --release --locked --quiet --bin anvil)
  anvil="$CARGO_TARGET_DIR/release/anvil"
fi
[ -x "$anvil" ] || { echo "no executable anvil at $anvil" >&2; exit 1; }
anvil="$(cd "$(dirname "$anvil")" && pwd)/$(basename "$anvil")"

# --- a Python with tokenizers and pyarrow -------------------------------------------------------
# The python3 on PATH if it has them; otherwise the virtual environment scripts/test.sh uses.
py="${PYTHON:-python3}"
if ! "$py" -c 'import tokenizers, pyarrow' 2>/dev/null; then
  venv="${ANVIL_TEST_VENV:-$HOME/.cache/anvil/venv}"
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$repo/scripts/requirements-test.txt"
  py="$venv/bin/python3"
fi

# --- work directory -----------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/anvil-bench-data.XXXXXX")"
if [ "$keep" = 1 ]; then
  trap 'log "kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
results="$work/results.jsonl"
runlog="$work/anvil.log"
: >"$results"
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

# --- setup (untimed) ----------------------------------------------------------------------------
log "setup: anvil data prepare --source $source --langs $langs; anvil tokenizer train --max-mb 16"
"$anvil" data prepare --source "$source" --langs "$langs" --out "$work/corpus" -q >>"$runlog" 2>&1
"$anvil" tokenizer train --corpus "$work/corpus" --out "$work/tokenizer.json" --max-mb 16 -q >>"$runlog" 2>&1

# --- timed reps ---------------------------------------------------------------------------------
timed() { # step rep cmd...
  local step="$1" rep="$2"; shift 2
  "$py" "$bench_py" timed --out "$results" --log "$runlog" --step "$step" --rep "$rep" -- "$@"
}
run_anvil() { # rep
  local r="$1" d="$work/rep$1"
  mkdir -p "$d"
  timed prepare "$r" "$anvil" data prepare --source "$source" --langs "$langs" --out "$d/corpus" -q
  timed tokenize "$r" "$anvil" data tokenize --corpus "$d/corpus" --tokenizer "$work/tokenizer.json" \
    --out "$d/tok" --seq-len 1024 -q
  timed tokenize_fim_ast "$r" "$anvil" data tokenize --corpus "$d/corpus" --tokenizer "$work/tokenizer.json" \
    --out "$d/tok_fim_ast" --seq-len 1024 --fim-rate 0.5 --ast -q
  cp "$d/corpus/manifest.json" "$d/manifest.json"
  cp "$d/tok/tokens.json" "$d/tokens.json"
  cp "$d/tok_fim_ast/tokens.json" "$d/tokens_fim_ast.json"
  rm -rf "$d/corpus" "$d/tok" "$d/tok_fim_ast"
}
run_python() { # rep; one process per method, their order alternating with the rep too
  local m methods=(encode_batch encode_batch_fast)
  (($1 % 2)) || methods=(encode_batch_fast encode_batch)
  for m in "${methods[@]}"; do
    "$py" "$bench_py" encode --out "$results" --corpus "$work/corpus" --tokenizer "$work/tokenizer.json" \
      --rep "$1" --method "$m"
  done
}
for ((r = 1; r <= reps; r++)); do
  log "rep $r/$reps (load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'))"
  if ((r % 2)); then run_anvil "$r"; run_python "$r"; else run_python "$r"; run_anvil "$r"; fi
done

# --- report -------------------------------------------------------------------------------------
echo "command: scripts/bench/data_throughput.sh ${orig_args[*]}"
"$py" "$bench_py" report --results "$results" --work "$work" --anvil-version "$("$anvil" --version)" \
  --nproc "$nproc_" --source "$source" --langs "$langs" --load-before "$load_before" "${markdown[@]}"
