"""Summarizes scripts/bench/ddp_overhead.sh's runs and projects the exchange onto real networks.

Measured (per run folder, from the trainer's metrics.jsonl, the first --skip steps dropped):
step seconds (global tokens a step / train/tokens_per_s), dist/comm_s (seconds inside the
gradient and weight collectives, waiting for the other rank included) and dist/comm_bytes
(bytes this rank sent). The best of the repetitions of each setup is reported.

Model on paper (not measured): Anvil's exchange is a reduce-scatter (all-to-all of each rank's
shard, summed on its owner) followed by an all-gather, bucket by bucket; each rank sends
2·(N−1)/N·4P bytes for P trainable f32 parameters, in 2·(N−1)·⌈4P/(N·bucket)⌉ messages. Over a
network of bandwidth β and per-message latency α, with no overlap with compute:
    t_comm(N) = 2·(N−1)/N·4P/β + 2·(N−1)·⌈4P/(N·bucket)⌉·α
and the scaling efficiency is t_compute / (t_compute + t_comm), t_compute being one rank's
measured step minus its collectives. α is an assumption, stated with the table.
"""

import argparse
import json
import math
import pathlib
import statistics

GLOBAL_TOKENS = 16 * 256  # rows × seq_len a step, every setup


def load(run: pathlib.Path, skip: int) -> dict:
    series: dict[str, list[tuple[int, float]]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        series.setdefault(m["key"], []).append((m["step"], m["value"]))
    def mean(key):
        vals = [v for s, v in series.get(key, []) if s > skip]
        return statistics.mean(vals) if vals else 0.0
    tps = mean("train/tokens_per_s")
    return {
        "tokens_per_s": tps,
        "step_s": GLOBAL_TOKENS / tps,
        "comm_s": mean("dist/comm_s"),
        "comm_bytes": mean("dist/comm_bytes"),
        "optimizer_values": mean("dist/optimizer_values"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--skip", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {}
    for d in sorted(pathlib.Path(a.work).iterdir()):
        if (d / "metrics.jsonl").is_file():
            runs.setdefault(d.name.rsplit("-", 1)[0], []).append(load(d, a.skip))
    best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
    names = {
        "one": "1 process × 2 threads (grad_accum 2)",
        "ddp0": "2 ranks × 1 thread, DDP",
        "ddp1": "2 ranks × 1 thread, ZeRO-1",
    }
    base = best["one"]["tokens_per_s"]
    print("| setup | step (s) | tokens/s | vs 1 process | collectives (s/step) | sent per rank (MB/step) | AdamW moments kept (values/rank) |")
    print("|---|---|---|---|---|---|---|")
    for k in ["one", "ddp0", "ddp1"]:
        r = best[k]
        moments = f"{r['optimizer_values']:,.0f}" if r["optimizer_values"] else "all"
        print(
            f"| {names[k]} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['tokens_per_s'] / base:.2f}× | {r['comm_s']:.4f} | "
            f"{r['comm_bytes'] / 1e6:.2f} | {moments} |"
        )
    ddp = best["ddp0"]
    # Bytes a rank sends for N = 2 are (N−1)/N·2·4P = 4P: P from the measurement.
    params = ddp["comm_bytes"] / 4
    compute = ddp["step_s"] - ddp["comm_s"]
    print()
    print(
        f"Projection (model above) for P = {params / 1e6:.2f} M trainable values, one rank per "
        f"node, t_compute = {compute:.3f} s a step (measured: 2-rank step minus collectives):"
    )
    print()
    print("| network | α (assumed) | bucket | N = 2 | N = 8 | N = 32 |")
    print("|---|---|---|---|---|---|")
    for label, beta, alpha in [("10 Gb/s TCP", 10e9 / 8, 30e-6), ("100 Gb/s RDMA", 100e9 / 8, 3e-6)]:
        for bucket_mb in [1, 25, 100]:
            cells = []
            for n in [2, 8, 32]:
                bucket = bucket_mb * 1048576
                msgs = 2 * (n - 1) * math.ceil(4 * params / (n * bucket))
                t = 2 * (n - 1) / n * 4 * params / beta + msgs * alpha
                cells.append(f"{t * 1e3:.1f} ms, {compute / (compute + t):.0%}")
            print(f"| {label} | {alpha * 1e6:.0f} µs | {bucket_mb} MB | " + " | ".join(cells) + " |")
    print()
    print("(cells: exchange time a step, scaling efficiency)")


if __name__ == "__main__":
    main()
