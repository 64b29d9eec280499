#!/usr/bin/env python3
"""PEFT + PyTorch eager reference for scripts/bench/lora_throughput.sh: LoRA (r, alpha, targets as
Anvil's run) on HF transformers' LlamaForCausalLM of the same shape (SDPA attention, no
torch.compile), the base frozen, AdamW on the adapters, random tokens of the same shape. Prints
one JSON line: tokens/s over the timed steps (input tokens = batch x seq per step), peak RSS and
the trainable parameter count.

Usage: lora_throughput.py --threads N [--steps 20] [--warmup 3] [--d-model 256] [--layers 4]
                          [--heads 4] [--seq 256] [--batch 8] [--vocab 8192] [--r 16]
                          [--alpha 32] [--targets q_proj,k_proj,v_proj,o_proj]
"""
import argparse
import json
import resource
import time

import torch
from peft import LoraConfig, get_peft_model

from hf_llama import add_shape_args, model as build

p = argparse.ArgumentParser()
add_shape_args(p, steps=20, warmup=3)
p.add_argument("--r", type=int, default=16)
p.add_argument("--alpha", type=float, default=32)
p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
base = build(a)
lora = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, bias="none",
                  target_modules=a.targets.split(","), task_type="CAUSAL_LM")
model = get_peft_model(base, lora).train()
trainable = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
ids = torch.randint(0, a.vocab, (a.steps + a.warmup, a.batch, a.seq))


def step(i):
    out = model(input_ids=ids[i], labels=ids[i])
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()


for i in range(a.warmup):
    step(i)
t0 = time.perf_counter()
for i in range(a.warmup, a.warmup + a.steps):
    step(i)
dt = time.perf_counter() - t0
print(json.dumps({
    "impl": "peft", "torch": torch.__version__, "threads": a.threads,
    "tokens_per_s": a.steps * a.batch * a.seq / dt, "seconds": dt, "steps": a.steps,
    "params": sum(q.numel() for q in model.parameters()),
    "trainable": sum(q.numel() for q in trainable),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
