#!/usr/bin/env python3
"""PyTorch eager reference for scripts/bench/train_throughput.sh: the same Llama shape Anvil
trains (HF transformers' LlamaForCausalLM, SDPA attention, no torch.compile), AdamW with the same
settings and global-norm clipping, on random tokens of the same shape. Prints one JSON line:
tokens/s over the timed steps (input tokens = batch x seq per step) and peak RSS.

Usage: train_throughput.py --threads N [--steps 30] [--warmup 5] [--d-model 256] [--layers 4]
                           [--heads 4] [--seq 256] [--batch 8] [--vocab 8192]
"""
import argparse
import json
import resource
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, required=True)
p.add_argument("--steps", type=int, default=30)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--d-model", type=int, default=256)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--vocab", type=int, default=8192)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
ff = (8 * a.d_model // 3 + 63) // 64 * 64  # Anvil's default d_ff
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d_model, intermediate_size=ff,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=a.heads, max_position_embeddings=a.seq,
                  tie_word_embeddings=True)
model = LlamaForCausalLM(cfg).float().train()
decay = [q for n, q in model.named_parameters() if q.ndim == 2 and "embed_tokens" not in n]
no_decay = [q for n, q in model.named_parameters() if not (q.ndim == 2 and "embed_tokens" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
ids = torch.randint(0, a.vocab, (a.steps + a.warmup, a.batch, a.seq))

def step(i):
    out = model(input_ids=ids[i], labels=ids[i])
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return out.loss.item()

for i in range(a.warmup):
    step(i)
t0 = time.perf_counter()
for i in range(a.warmup, a.warmup + a.steps):
    step(i)
dt = time.perf_counter() - t0
print(json.dumps({
    "impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
    "tokens_per_s": a.steps * a.batch * a.seq / dt, "seconds": dt, "steps": a.steps,
    "params": sum(q.numel() for q in model.parameters()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
