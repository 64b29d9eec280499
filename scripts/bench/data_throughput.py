#!/usr/bin/env python3
"""Helper for scripts/bench/data_throughput.sh (run that, not this).

Subcommands:
  timed   run one command, append its wall time, CPU time and peak RSS to a JSON-lines file
  encode  the reference: the same tokenizer.json through the `tokenizers` Python binding,
          `encode_batch` (and `encode_batch_fast` where it exists) over the corpus's kept files
  report  the table (plain text, and Markdown with --markdown) from the JSON-lines file

Every timed measurement is one line of JSON in the results file, so a run can be re-reported
without measuring again (`report --results FILE`).
"""

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

MB = 1e6  # decimal megabytes, as `anvil data prepare` prints them


def append(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def machine_busy_s():
    """CPU seconds all processes on the machine have used so far (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def other_cores(busy0, busy1, cpu, wall):
    """Cores' worth of CPU that processes other than the measured one used during the window."""
    if busy0 is None or busy1 is None or wall <= 0:
        return None
    return max(0.0, (busy1 - busy0 - cpu) / wall)


# --- timed ---------------------------------------------------------------------------------


def cmd_timed(a):
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("timed: no command given")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(a.log, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        b0 = machine_busy_s()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        b1 = machine_busy_s()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"timed: `{' '.join(cmd)}` failed with exit status {proc.returncode}; see {a.log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # This process waits for exactly one child, so the children's high-water mark is its peak RSS.
    append(a.out, {"kind": "anvil", "step": a.step, "rep": a.rep, "wall_s": wall, "cpu_s": cpu,
                   "max_rss_kb": after.ru_maxrss, "other_cores": other_cores(b0, b1, cpu, wall)})


# --- encode --------------------------------------------------------------------------------


def read_texts(corpus):
    import pyarrow.parquet as pq

    with open(os.path.join(corpus, "manifest.json")) as f:
        manifest = json.load(f)
    texts = []
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            col = pq.read_table(os.path.join(corpus, shard), columns=["content"]).column("content")
            texts.extend(col.to_pylist())
    return texts


def fresh_tokenizer(path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # As anvil encodes: special-token strings inside files stay ordinary text. (It changes which
    # ids come out only if a file contains e.g. "<|endoftext|>", and costs nothing measurable.)
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True
    return tok


def cmd_encode(a):
    texts = read_texts(a.corpus)  # reading is setup: not timed
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    m = a.method
    if not hasattr(fresh_tokenizer(a.tokenizer), m):
        print(f"[bench] this tokenizers ({mod_version('tokenizers')}) has no {m}; row skipped",
              file=sys.stderr)
        return
    # A fresh tokenizer: its BPE word cache starts empty, as it does in each anvil run.
    tok = fresh_tokenizer(a.tokenizer)
    fn = getattr(tok, m)
    gc.collect()
    b0 = machine_busy_s()
    c0 = time.process_time()
    t0 = time.perf_counter()
    encs = fn(texts, add_special_tokens=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    b1 = machine_busy_s()
    n_tokens = sum(len(e.ids) for e in encs)
    # One method per process, so the peak RSS is this call's (texts and encodings included).
    append(a.out, {"kind": "python", "step": m, "rep": a.rep, "wall_s": wall, "cpu_s": cpu,
                   "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   "n_docs": len(texts), "n_bytes": n_bytes, "n_tokens": n_tokens,
                   "other_cores": other_cores(b0, b1, cpu, wall)})


# --- report --------------------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_json(path):
    with open(path) as f:
        return json.load(f)


def fmt_rss(kb):
    return f"{kb / 1024:.0f} MiB" if kb else "-"


def cmd_report(a):
    recs = [json.loads(line) for line in open(a.results) if line.strip()]
    by = {}
    for r in recs:
        by.setdefault((r["kind"], r["step"]), {})[r["rep"]] = r
    reps = sorted({r["rep"] for r in recs})

    # Bytes: source bytes read (manifest bytes.candidates) for the pipeline rows; the kept bytes
    # (what tokenize and the Python reference encode) for the tokenize-only and Python rows.
    manifests = {rep: load_json(os.path.join(a.work, f"rep{rep}", "manifest.json")) for rep in reps}
    cand = {rep: m["bytes"]["candidates"] for rep, m in manifests.items()}
    kept = {rep: m["bytes"]["kept"] for rep, m in manifests.items()}

    def series(kind, steps, nbytes):
        """Per rep: (wall, cpu, rss, bytes, other) of the sum of `steps` (run one after another);
        other = the cores' worth of CPU other processes used meanwhile (wall-weighted)."""
        out = []
        for rep in reps:
            parts = [by.get((kind, s), {}).get(rep) for s in steps]
            if any(p is None for p in parts):
                continue
            wall = sum(p["wall_s"] for p in parts)
            others = [p.get("other_cores") for p in parts]
            other = (sum(o * p["wall_s"] for o, p in zip(others, parts)) / wall
                     if None not in others else None)
            out.append((wall, sum(p["cpu_s"] for p in parts), max(p["max_rss_kb"] for p in parts),
                        nbytes[rep], other))
        return out

    rows = [
        ("anvil prepare + tokenize", series("anvil", ["prepare", "tokenize"], cand), "source"),
        ("anvil prepare + tokenize --fim-rate 0.5 --ast",
         series("anvil", ["prepare", "tokenize_fim_ast"], cand), "source"),
        ("anvil tokenize alone", series("anvil", ["tokenize"], kept), "kept"),
        ("anvil tokenize alone --fim-rate 0.5 --ast", series("anvil", ["tokenize_fim_ast"], kept), "kept"),
        ("anvil prepare alone", series("anvil", ["prepare"], cand), "source"),
        ("python tokenizers encode_batch", series("python", ["encode_batch"], kept), "kept"),
        ("python tokenizers encode_batch_fast", series("python", ["encode_batch_fast"], kept), "kept"),
    ]
    table = []
    ref = None
    for name, s, basis in rows:
        if not s:
            continue
        walls = [x[0] for x in s]
        med = statistics.median(walls)
        nbytes = statistics.median(x[3] for x in s)
        mbps = nbytes / MB / med
        cpu_pct = statistics.median(x[1] / x[0] * 100 for x in s)
        rss = max(x[2] for x in s)
        others = [x[4] for x in s if x[4] is not None]
        other = statistics.median(others) if others else None
        if name == "python tokenizers encode_batch":
            ref = mbps
        table.append({"name": name, "basis": basis, "mb": nbytes / MB, "median": med, "min": min(walls),
                      "mbps": mbps, "cpu_pct": cpu_pct, "rss": rss, "other": other, "n": len(s)})
    for t in table:
        t["ratio"] = t["mbps"] / ref if ref else None

    # Token counts: anvil's n_tokens counts one <|endoftext|> per document on top of the text.
    tok_counts = []
    for rep in reps:
        p = os.path.join(a.work, f"rep{rep}", "tokens.json")
        if os.path.exists(p):
            tj = load_json(p)
            splits = [v for v in tj.values() if isinstance(v, dict) and "n_tokens" in v]
            tok_counts.append((sum(v["n_tokens"] for v in splits), sum(v["n_docs"] for v in splits)))
    py = [r for r in by.get(("python", "encode_batch"), {}).values()]
    pyf = [r for r in by.get(("python", "encode_batch_fast"), {}).values()]

    threads = os.environ.get("RAYON_NUM_THREADS", "?")
    now = datetime.datetime.now().astimezone()
    info = {
        "date": now.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores (nproc {a.nproc}), {cpu_model()}, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
        "kernel": f"{platform.system()} {platform.release()}",
        "versions": f"{a.anvil_version}; python {platform.python_version()}, "
                    f"tokenizers {mod_version('tokenizers')}, pyarrow {mod_version('pyarrow')}",
        "threads": f"RAYON_NUM_THREADS={threads} for anvil and for tokenizers "
                   f"(TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '?')})",
        "load": f"load average {a.load_before} before, {load_avg()} after",
        "reps": f"{len(reps)} (median and min of wall-clock seconds)",
    }

    lines = []
    lines.append("Data pipeline throughput: anvil data prepare + tokenize vs tokenizers' encode_batch")
    for k, v in info.items():
        lines.append(f"  {k + ':':10s} {v}")
    m0 = manifests[reps[0]]
    lines.append(f"  {'corpus:':10s} {a.source} ({a.langs}): {cand[reps[0]] / MB:.1f} MB read from "
                 f"{m0['counts']['candidates']} files, {kept[reps[0]] / MB:.1f} MB kept in "
                 f"{m0['counts']['kept']} files")
    lines.append("")
    hdr = ["", "MB", "s (median)", "s (min)", "MB/s", "x encode_batch", "CPU %", "other load", "peak RSS"]
    body = []
    for t in table:
        body.append([t["name"], f"{t['mb']:.1f} {t['basis']}", f"{t['median']:.2f}", f"{t['min']:.2f}",
                     f"{t['mbps']:.2f}", f"{t['ratio']:.2f}" if t["ratio"] is not None else "-",
                     f"{t['cpu_pct']:.0f}", f"{t['other']:.2f}" if t["other"] is not None else "-",
                     fmt_rss(t["rss"])])
    widths = [max(len(r[i]) for r in [hdr] + body) for i in range(len(hdr))]
    fmt_row = lambda r: "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    lines.append(fmt_row(hdr))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt_row(r) for r in body)
    lines.append("")
    lines.append("MB/s = MB / median seconds. 'source' = bytes read from the source files "
                 "(manifest bytes.candidates); 'kept' = bytes of the files kept in the corpus, "
                 "which tokenize and the Python reference encode. CPU % = (user+sys) / wall, median; "
                 "other load = cores' worth of CPU used by other processes on the machine meanwhile "
                 "(/proc/stat), median - anything well above 0 means the figures are contended; "
                 "peak RSS = the largest of the processes in that row (Python: the whole process, "
                 "texts and encodings included).")
    lines.append("The anvil rows time whole processes (reading, parsing, filtering, dedup, license "
                 "detection, Parquet I/O, packing); the Python rows time the encode call alone.")
    pipe = next((t for t in table if t["name"] == "anvil prepare + tokenize"), None)
    if pipe and pipe["ratio"] is not None:
        verdict = "met" if pipe["ratio"] >= 0.7 else "NOT met"
        lines.append(f"Target (pipeline >= 0.7x tokenization alone): {pipe['ratio']:.2f}x -> {verdict}")
    lines.append("")
    if tok_counts:
        nt, nd = tok_counts[0]
        lines.append(f"Tokens: anvil tokenize n_tokens {nt:,} over {nd:,} documents; this includes one "
                     f"<|endoftext|> per document, so {nt - nd:,} text tokens.")
        if len(set(tok_counts)) > 1:
            lines.append(f"  WARNING: anvil token counts differ between reps: {sorted(set(tok_counts))}")
        for name, rs in (("encode_batch", py), ("encode_batch_fast", pyf)):
            if not rs:
                continue
            counts = sorted({r["n_tokens"] for r in rs})
            docs = sorted({r["n_docs"] for r in rs})
            same = counts == [nt - nd] and docs == [nd]
            note = "same as anvil" if same else f"DIFFERS from anvil by {counts[0] - (nt - nd):+,}"
            lines.append(f"        python {name}: {', '.join(f'{c:,}' for c in counts)} tokens over "
                         f"{', '.join(f'{d:,}' for d in docs)} documents ({note})")
    print("\n".join(lines))

    if a.markdown:
        md = ["", "Markdown:", ""]
        md.append("| | MB | s (median) | s (min) | MB/s | × encode_batch | CPU % | other load | peak RSS |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in body:
            md.append("| " + " | ".join([f"`{r[0]}`" if r[0].startswith("anvil") else r[0]] + r[1:]) + " |")
        print("\n".join(md))


def mod_version(name):
    try:
        return __import__(name).__version__
    except Exception:
        return "not installed"


def load_avg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)
    t = sub.add_parser("timed")
    t.add_argument("--out", required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--step", required=True)
    t.add_argument("--rep", type=int, required=True)
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    e = sub.add_parser("encode")
    e.add_argument("--out", required=True)
    e.add_argument("--corpus", required=True)
    e.add_argument("--tokenizer", required=True)
    e.add_argument("--rep", type=int, required=True)
    e.add_argument("--method", choices=["encode_batch", "encode_batch_fast"], required=True)
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--work", required=True, help="the work dir (rep*/manifest.json, rep*/tokens.json)")
    r.add_argument("--anvil-version", default="anvil ?")
    r.add_argument("--nproc", default=str(os.cpu_count()))
    r.add_argument("--source", default="python-stdlib")
    r.add_argument("--langs", default="python")
    r.add_argument("--load-before", default="?")
    r.add_argument("--markdown", action="store_true")
    a = p.parse_args()
    {"timed": cmd_timed, "encode": cmd_encode, "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    main()
