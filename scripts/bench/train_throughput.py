#!/usr/bin/env python3
"""PyTorch eager reference for scripts/bench/train_throughput.sh: the same Llama shape Anvil
trains (HF transformers' LlamaForCausalLM, SDPA attention, no torch.compile), AdamW with the same
settings and global-norm clipping, on random tokens of the same shape. Prints one JSON line:
tokens/s over the timed steps (input tokens = batch x seq per step) and peak RSS.

With --precision bf16/f16 the step runs under torch.autocast (f32 weights and optimizer), f16
with torch.amp.GradScaler: the reference for Anvil's `train.precision`.

Usage: train_throughput.py --threads N [--steps 30] [--warmup 5] [--d-model 256] [--layers 4]
                           [--heads 4] [--seq 256] [--batch 8] [--vocab 8192]
                           [--precision f32|bf16|f16] [--device cpu|cuda]
"""
import argparse
import json
import resource
import time

import torch

from hf_llama import add_shape_args, model as build

p = argparse.ArgumentParser()
add_shape_args(p)
p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = build(a).train().to(a.device)
dtype = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[a.precision]
scaler = torch.amp.GradScaler(a.device, enabled=a.precision == "f16")
decay = [q for n, q in model.named_parameters() if q.ndim == 2 and "embed_tokens" not in n]
no_decay = [q for n, q in model.named_parameters() if not (q.ndim == 2 and "embed_tokens" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
ids = torch.randint(0, a.vocab, (a.steps + a.warmup, a.batch, a.seq)).to(a.device)

def step(i):
    with torch.autocast(a.device, dtype=dtype, enabled=dtype is not None):
        out = model(input_ids=ids[i], labels=ids[i])
    opt.zero_grad(set_to_none=True)
    scaler.scale(out.loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    return out.loss.item()

for i in range(a.warmup):
    step(i)
t0 = time.perf_counter()
for i in range(a.warmup, a.warmup + a.steps):
    step(i)
dt = time.perf_counter() - t0
print(json.dumps({
    "impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
    "precision": a.precision, "device": a.device,
    "tokens_per_s": a.steps * a.batch * a.seq / dt, "seconds": dt, "steps": a.steps,
    "params": sum(q.numel() for q in model.parameters()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
