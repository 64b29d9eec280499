#!/usr/bin/env python3
"""GRPO steps/s of TRL's GRPOTrainer on CPU: the reference side of scripts/bench/grpo_throughput.sh.

Trains a LlamaForCausalLM (an `anvil export --format hf` folder: config.json, model.safetensors,
tokenizer.json; no chat template, so prompts are plain text) with GRPO on HumanEval-shaped problems
(task_id, prompt, test, entry_point; e.g. `anvil data synth` output), one reward: the test pass
rate of each completion. CPU, fp32, PyTorch eager, transformers' generate (no vLLM), beta 0 (no
reference model), loss "dapo", advantages scaled per group, one PPO iteration per generation batch
(epsilon 0.2, so the importance ratio is 1 and the clipped objective is the plain policy gradient),
one optimizer step per step on P prompts x G completions.

Each step is timed from the trainer's on_step_begin to its on_step_end (generation, reward,
forward + backward, optimizer step); generation_s is the time inside GRPOTrainer._generate
(prompt tokenization, transformers' generate, decoding), reward_s the time inside the reward
function, update_s the rest (padding, advantages, the loss forward with its entropy, backward,
clipping, AdamW).

Reward: a completion is cut at the first of the stop strings (in the completion's text only), then
`prompt + completion` and the problem's `test` run in one `python3 -I -S` subprocess per completion
(3 s timeout; stdlib only), each statement of `check(candidate)` on its own in a try/except; reward = passed asserts
/ asserts (0 on a syntax error, an error while defining the candidate, or a timeout). Completions'
subprocesses run in parallel on --threads workers.

Stop strings in generation: TRL's GRPOTrainer calls `model.generate(**inputs,
generation_config=...)` without a tokenizer, so transformers' own `stop_strings` (which needs
`tokenizer=`) cannot be set through GRPOConfig.generation_kwargs. Instead this script wraps the
policy's `generate` to add a StoppingCriteria that decodes each row's completion (the tokens after
the prompt, never the prompt) and stops the row once its text holds a stop string; the stopped
row then gets pad tokens until the whole batch is done (transformers' behaviour). TRL only masks
after EOS, so those pads would count as completion tokens in the loss: the wrapper of
GRPOTrainer._generate_single_turn cuts each completion after the token that completed its first
stop string (pads dropped). The completion the loss sees thus ends with the stop string's tokens,
and the reward cuts the stop string off the text.

Usage: grpo_trl.py --model HF_DIR --problems train.jsonl --prompts-per-step 4 --group-size 8
                   --max-completion-tokens 64 --steps 10 --threads 2 --out trl.json
"""
import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

STOPS = ["\ndef", "\nclass", "\nif", "\nprint", "\n#"]

# Runs in the python3 subprocess: the candidate program, the test's definitions, then each
# statement of check(candidate) alone. Reads a JSON object on stdin, prints a sentinel line.
CHILD = r"""
import json, sys
d = json.loads(sys.stdin.read())
out = sys.stdout
g = {"__name__": "__candidate__"}
try:
    exec(compile(d["program"], "<candidate>", "exec"), g)
    exec(compile(d["test"], "<test>", "exec"), g)
    g["candidate"] = g[d["entry_point"]]
except BaseException:
    out.write("\n__GRPO_PASSED__ 0\n"); out.flush(); sys.exit(0)
n = 0
for src, counted in d["stmts"]:
    try:
        exec(compile(src, "<check>", "exec"), g)
        n += counted
    except BaseException:
        pass
out.write("\n__GRPO_PASSED__ %d\n" % n); out.flush()
"""


def cut_at_stop(text):
    cut = min((i for i in (text.find(s) for s in STOPS) if i >= 0), default=len(text))
    return text[:cut]


def check_statements(test, entry_point):
    """The statements of `check(candidate)`'s body, in order, each with 1 if it is an assert."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return [("check(candidate)", 1)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            stmts = []
            for s in node.body:
                src = ast.get_source_segment(test, s)
                if src is None:
                    continue
                # Continuation lines keep the body's indentation; dedent what ast gave us.
                lines = src.split("\n")
                indent = s.col_offset
                src = "\n".join([lines[0]] + [l[indent:] if l[:indent].strip() == "" else l for l in lines[1:]])
                stmts.append((src, 1 if isinstance(s, ast.Assert) else 0))
            if any(c for _, c in stmts):
                return stmts
    return [("check(candidate)", 1)]


class PassRateReward:
    """The GRPO reward: the share of the problem's asserts that pass."""

    def __init__(self, threads, python_exe, timeout=3.0):
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.python = python_exe
        self.timeout = timeout
        self.seconds = 0.0
        self.last = []
        self.dump = None
        self.__name__ = "pass_rate"

    def run_one(self, job):
        program, test, entry_point, stmts = job
        total = sum(c for _, c in stmts)
        payload = json.dumps({"program": program, "test": test, "entry_point": entry_point, "stmts": stmts})
        try:
            r = subprocess.run([self.python, "-I", "-S", "-c", CHILD], input=payload, capture_output=True,
                               text=True, timeout=self.timeout, errors="replace")
        except subprocess.TimeoutExpired:
            return 0.0
        for line in reversed(r.stdout.splitlines()):
            if line.startswith("__GRPO_PASSED__ "):
                return int(line.split()[1]) / total if total else 0.0
        return 0.0

    def __call__(self, prompts, completions, test, entry_point, **kwargs):
        t0 = time.perf_counter()
        jobs = [(p + cut_at_stop(c), t, e, check_statements(t, e))
                for p, c, t, e in zip(prompts, completions, test, entry_point)]
        rewards = list(self.pool.map(self.run_one, jobs))
        self.seconds += time.perf_counter() - t0
        self.last = rewards
        if self.dump is not None:
            for tid, c, r in zip(kwargs.get("task_id", [None] * len(rewards)), completions, rewards):
                self.dump.write(json.dumps({"task_id": tid, "completion": c, "reward": r}) + "\n")
            self.dump.flush()
        return rewards


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF folder (config.json, model.safetensors, tokenizer.json)")
    ap.add_argument("--problems", required=True, help="JSONL: task_id, prompt, test, entry_point")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-completion-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient (a reference model when > 0)")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--adam-eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--warmup-steps", type=int, default=0, help="linear warmup, then a constant lr")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--python-exe", default=None,
                    help="interpreter that runs the tests, as `EXE -I -S` (default: python3 on PATH, "
                         "resolved to its real executable so a pyenv shim's ~0.1 s start is not timed)")
    ap.add_argument("--no-stop", action="store_true", help="generate to --max-completion-tokens or EOS")
    ap.add_argument("--completions", help="also write each completion (as the loss saw it) and its reward, JSONL")
    ap.add_argument("--out", required=True, help="JSON results")
    a = ap.parse_args()
    if a.python_exe is None:
        exe = shutil.which("python3") or sys.executable
        a.python_exe = subprocess.run([exe, "-c", "import sys; print(sys.executable)"], capture_output=True,
                                      text=True, check=True).stdout.strip() or exe

    import torch
    torch.set_num_threads(a.threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, PreTrainedTokenizerFast, StoppingCriteria,
                              StoppingCriteriaList, TrainerCallback)
    from trl import GRPOConfig, GRPOTrainer

    transformers.logging.set_verbosity_error()
    problems = [json.loads(l) for l in open(a.problems) if l.strip()]
    P, G, S = a.prompts_per_step, a.group_size, a.steps
    # The problems in file order, cycled, P per step: exactly P*S rows so one epoch is S steps and
    # the (unshuffled) RepeatSampler never drops a short tail.
    rows = [problems[i % len(problems)] for i in range(P * S)]
    dataset = Dataset.from_list([{"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"],
                                  "task_id": r["task_id"]} for r in rows])

    tok_json = os.path.join(a.model, "tokenizer.json")
    if os.path.exists(os.path.join(a.model, "tokenizer_config.json")):
        tok = PreTrainedTokenizerFast.from_pretrained(a.model)
    else:  # anvil export writes tokenizer.json only; its specials are <|endoftext|> and <|pad|>
        tok = PreTrainedTokenizerFast(tokenizer_file=tok_json, eos_token="<|endoftext|>", pad_token="<|pad|>")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.train()

    out_dir = tempfile.mkdtemp(prefix="grpo_trl_")
    config = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # TRL's default is True; plain eager backward here
        per_device_train_batch_size=P * G,
        gradient_accumulation_steps=1,
        num_generations=G,
        max_completion_length=a.max_completion_tokens,
        temperature=a.temperature,
        top_p=1.0,
        top_k=0,
        beta=a.beta,
        loss_type="dapo",
        scale_rewards="group",
        num_iterations=1,
        epsilon=0.2,
        learning_rate=a.lr,
        adam_beta1=a.beta1,
        adam_beta2=a.beta2,
        adam_epsilon=a.adam_eps,
        weight_decay=a.weight_decay,
        max_grad_norm=a.max_grad_norm,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=a.warmup_steps,
        max_steps=S,
        shuffle_dataset=False,
        seed=a.seed,
        data_seed=a.seed,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    reward = PassRateReward(a.threads, a.python_exe)
    if a.completions:
        reward.dump = open(a.completions, "w")
    timing = {"generation": 0.0, "t0": 0.0, "calls_generate": 0, "stop_checks": 0}
    steps, logs_by_step = [], {}  # per step: our timings; TRL's own logged metrics

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timing["generation"] = 0.0
            reward.seconds = 0.0
            timing["t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            total = time.perf_counter() - timing["t0"]
            r = reward.last
            mean = sum(r) / len(r) if r else float("nan")
            std = (sum((x - mean) ** 2 for x in r) / len(r)) ** 0.5 if r else float("nan")
            steps.append({"step": state.global_step, "seconds": total, "generation_s": timing["generation"],
                          "reward_s": reward.seconds, "update_s": total - timing["generation"] - reward.seconds,
                          "reward_mean": mean, "reward_std": std})
            print(f"[trl] step {state.global_step}: {total:.2f} s (generation {timing['generation']:.2f}, "
                  f"reward {reward.seconds:.2f}), reward {mean:.3f}", file=sys.stderr, flush=True)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                logs_at = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                logs_by_step.setdefault(state.global_step, {}).update(logs_at)

    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=dataset,
                          processing_class=tok, callbacks=[Timer()])

    # Generation time: everything inside GRPOTrainer._generate (tokenize, generate, decode).
    orig_generate = trainer._generate

    def timed_generate(prompts):
        t0 = time.perf_counter()
        try:
            return orig_generate(prompts)
        finally:
            timing["generation"] += time.perf_counter() - t0

    trainer._generate = timed_generate

    if not a.no_stop:
        class CompletionStop(StoppingCriteria):
            """Stops a row once its completion text (after the prompt) holds a stop string."""

            def __init__(self, prompt_len):
                self.prompt_len = prompt_len

            def __call__(self, input_ids, scores, **kw):
                timing["stop_checks"] += 1
                texts = tok.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
                return torch.tensor([any(s in t for s in STOPS) for t in texts], dtype=torch.bool,
                                    device=input_ids.device)

        policy = trainer.model
        model_generate = policy.generate

        def generate_with_stops(*args, **kw):
            timing["calls_generate"] += 1
            ids = kw.get("input_ids", args[0] if args else None)
            crit = StoppingCriteriaList(kw.pop("stopping_criteria", None) or [])
            crit.append(CompletionStop(ids.shape[1]))
            return model_generate(*args, stopping_criteria=crit, **kw)

        policy.generate = generate_with_stops

        # Cut each completion after the token that completes its first stop string (drops the pad
        # tokens transformers writes after a stopped row; TRL itself only masks after EOS).
        orig_single_turn = trainer._generate_single_turn

        def single_turn_cut(*args, **kw):
            completion_ids, logprobs = orig_single_turn(*args, **kw)
            cut = []
            for ids in completion_ids:
                ids = list(ids)
                text = tok.decode(ids, skip_special_tokens=True)
                if any(s in text for s in STOPS):
                    k = next(k for k in range(1, len(ids) + 1)
                             if any(s in tok.decode(ids[:k], skip_special_tokens=True) for s in STOPS))
                    if logprobs is not None:
                        logprobs[len(cut)] = logprobs[len(cut)][:k]
                    ids = ids[:k]
                cut.append(ids)
            return cut, logprobs

        trainer._generate_single_turn = single_turn_cut

    t_train = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t_train
    if not a.no_stop and timing["calls_generate"] == 0:
        print("[trl] warning: the generate wrapper was never called: stop strings not applied", file=sys.stderr)

    for s in steps:
        s["trl_logs"] = logs_by_step.get(s["step"], {})
    later = steps[1:] or steps
    result = {
        "config": {
            "model": os.path.abspath(a.model), "problems": os.path.abspath(a.problems),
            "n_problems": len(problems), "prompts_per_step": P, "group_size": G,
            "max_completion_tokens": a.max_completion_tokens, "steps": S, "lr": a.lr,
            "adam_betas": [a.beta1, a.beta2], "adam_eps": a.adam_eps, "weight_decay": a.weight_decay,
            "max_grad_norm": a.max_grad_norm, "warmup_steps": a.warmup_steps,
            "temperature": a.temperature, "seed": a.seed, "stop_strings": [] if a.no_stop else STOPS,
            "beta": a.beta, "loss_type": "dapo", "scale_rewards": "group", "num_iterations": 1, "epsilon": 0.2,
            "per_device_train_batch_size": P * G, "dtype": "float32", "device": "cpu",
            "gradient_checkpointing": False, "reward_timeout_s": reward.timeout,
            "reward_python": a.python_exe,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "steps": steps,
        "mean_seconds_after_first": sum(s["seconds"] for s in later) / len(later) if later else None,
        "train_wall_s": wall,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "threads": a.threads,
        "stop_criteria_calls": timing["stop_checks"],
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    reward.pool.shutdown()


if __name__ == "__main__":
    main()
