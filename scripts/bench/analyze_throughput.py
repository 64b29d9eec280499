"""Helper of analyze_throughput.sh: the paths to analyze, one timed run of a tool, the report.

    analyze_throughput.py paths ROOT [--exclude NAME,NAME]
    analyze_throughput.py timed --tool T --rep N --out FILE --results JSONL -- CMD...
    analyze_throughput.py report --results JSONL --root DIR --threads N --nproc N ...

Standard library only: it runs under whatever python3 is on PATH, not the tools' venv.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time


def paths(root, exclude):
    """Top-level directories and *.py files of ROOT, NUL-separated, sorted. site-packages is
    third-party code installed into the stdlib directory, not the stdlib."""
    out = []
    skip = {"site-packages", "__pycache__", *filter(None, exclude.split(","))}
    for name in sorted(os.listdir(root)):
        p = os.path.join(root, name)
        if name.startswith(".") or name in skip:
            continue
        if os.path.isdir(p) or name.endswith(".py"):
            out.append(p)
    sys.stdout.write("".join(p + "\0" for p in out))


def files_of(tool, doc):
    """How many files a tool reports having analyzed, from its own output."""
    if tool == "anvil":
        return doc["totals"]["files"]
    if tool == "bandit":
        analyzed = [k for k in doc.get("metrics", {}) if k != "_totals"]
        failed = {e["filename"] for e in doc.get("errors", [])} - set(analyzed)
        return len(analyzed) + len(failed)
    return len(doc)  # radon: one key per file, errors included


def timed(args):
    start = time.perf_counter()
    with open(args.out, "wb") as out:
        rc = subprocess.run(args.cmd, stdout=out, stderr=subprocess.DEVNULL).returncode
    seconds = time.perf_counter() - start
    # CPU time (user + system) of the child: on a shared machine, wall time also measures the
    # neighbours; CPU time is what the tool itself burnt, whatever the load.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    try:
        with open(args.out, "rb") as f:
            doc = json.load(f)
    except ValueError as e:
        sys.exit(f"{args.tool}: output is not JSON ({e}); rc {rc}: {' '.join(args.cmd[:3])} …")
    row = {"tool": args.tool, "rep": args.rep, "seconds": seconds, "cpu_seconds": cpu, "rc": rc,
           "files": files_of(args.tool, doc)}
    if args.tool == "anvil":
        row["findings"] = doc["totals"]["findings"]
    elif args.tool == "bandit":
        row["findings"] = len(doc.get("results", []))
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"[bench]   {args.tool:8} rep {args.rep}: {row['files']} files in {seconds:.2f} s, "
          f"{cpu:.2f} CPU-s (rc {rc})",
          file=sys.stderr)


def report(args):
    rows = [json.loads(line) for line in open(args.results)]
    best = {}
    for r in rows:
        if r["tool"] not in best or r["seconds"] < best[r["tool"]]["seconds"]:
            best[r["tool"]] = r
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    load_after = open("/proc/loadavg").read().split()[:3]
    excluded = f" without {args.exclude}" if args.exclude else ""
    print(f"static analysis of {args.root}{excluded}: {cpu}, {args.nproc} CPUs, {datetime.date.today()}, "
          f"load before {args.load_before}, after {' '.join(load_after)}")
    print(f"anvil: {args.anvil_version}, RAYON_NUM_THREADS={args.threads}; bandit and radon: one process each")
    for r in rows:
        print(f"  rep {r['rep']} {r['tool']:8} {r['files']:6} files {r['seconds']:8.2f} s "
              f"{r['files'] / r['seconds']:8.1f} files/s  {r['cpu_seconds']:8.2f} CPU-s "
              f"{r['files'] / r['cpu_seconds']:8.1f} files/CPU-s")
    a = best["anvil"]
    python = [best[t] for t in ("bandit", "radon_cc", "radon_mi")]
    combined_s = sum(r["seconds"] for r in python)
    # Files/s of the three together: the files bandit covered (the widest of the three) over
    # the time all three took, one after the other.
    combined_files = max(r["files"] for r in python)
    anvil_fps = a["files"] / a["seconds"]
    combined_fps = combined_files / combined_s
    print(f"best: anvil {a['files']} files in {a['seconds']:.2f} s = {anvil_fps:.1f} files/s; "
          + ", ".join(f"{r['tool']} {r['files'] / r['seconds']:.1f} files/s ({r['seconds']:.2f} s)"
                      for r in python))
    print(f"bandit + radon cc + radon mi: {combined_files} files in {combined_s:.2f} s = "
          f"{combined_fps:.1f} files/s")
    print(f"ratio anvil / (bandit + radon): {anvil_fps / combined_fps:.1f}x files/s "
          f"({combined_s / a['seconds']:.1f}x wall time; goal >= 20x)")
    # Per CPU-second: what is left of the ratio without Anvil's threads (and without the load
    # the neighbours put on the wall clock). The least CPU time of each tool, over its runs.
    cpu = {t: min(r["cpu_seconds"] for r in rows if r["tool"] == t) for t in best}
    combined_cpu = cpu["bandit"] + cpu["radon_cc"] + cpu["radon_mi"]
    anvil_cps = a["files"] / cpu["anvil"]
    print(f"per CPU-second: anvil {anvil_cps:.1f} files/CPU-s ({cpu['anvil']:.2f} CPU-s), "
          f"bandit + radon {combined_files / combined_cpu:.1f} files/CPU-s ({combined_cpu:.2f} CPU-s: "
          f"bandit {cpu['bandit']:.2f}, radon cc {cpu['radon_cc']:.2f}, radon mi {cpu['radon_mi']:.2f}), "
          f"ratio {anvil_cps / (combined_files / combined_cpu):.1f}x")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd_name", required=True)
    s = sub.add_parser("paths")
    s.add_argument("root")
    s.add_argument("--exclude", default="")
    s = sub.add_parser("timed")
    s.add_argument("--tool", required=True)
    s.add_argument("--rep", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("report")
    for a in ("--results", "--root", "--threads", "--nproc", "--load-before", "--anvil-version"):
        s.add_argument(a, required=True)
    s.add_argument("--exclude", default="")
    args = p.parse_args()
    if args.cmd_name == "paths":
        paths(args.root, args.exclude)
    elif args.cmd_name == "timed":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        timed(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
