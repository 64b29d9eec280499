#!/usr/bin/env python3
"""Reward curves of a GRPO benchmark: Anvil's rl/reward_mean per step next to TRL's.

Usage: grpo_plot.py --trl trl.json [--anvil RUN_DIR/metrics.jsonl] --out docs/img/grpo_reward_curve.png
  --trl    the JSON written by scripts/bench/grpo_trl.py
  --anvil  Anvil's metrics.jsonl of the GRPO run (optional; left out when missing or empty)
"""
import argparse
import json
import os


def anvil_rewards(path):
    """{step: rl/reward_mean} from an Anvil metrics.jsonl (last value per step wins)."""
    out = {}
    if path and os.path.exists(path):
        for line in open(path):
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue
            if m.get("key") == "rl/reward_mean":
                out[int(m["step"])] = float(m["value"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trl", required=True)
    ap.add_argument("--anvil")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title")
    a = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trl = json.load(open(a.trl))
    cfg = trl["config"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    anvil = anvil_rewards(a.anvil)
    if anvil:
        steps = sorted(anvil)
        ax.plot(steps, [anvil[s] for s in steps], marker="o", ms=3, label="Anvil")
    t_steps = [s["step"] for s in trl["steps"]]
    ax.plot(t_steps, [s["reward_mean"] for s in trl["steps"]], marker="s", ms=3,
            label=f"TRL {trl['trl']} GRPOTrainer (torch {trl['torch'].split('+')[0]})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward (test pass rate)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(a.title or f"GRPO on CPU: {cfg['prompts_per_step']} prompts x {cfg['group_size']} completions, "
                            f"{cfg['max_completion_tokens']} tokens, {trl['threads']} threads", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
