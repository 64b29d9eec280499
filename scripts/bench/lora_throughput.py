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
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, required=True)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--d-model", type=int, default=256)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--vocab", type=int, default=8192)
p.add_argument("--r", type=int, default=16)
p.add_argument("--alpha", type=float, default=32)
p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
ff = (8 * a.d_model // 3 + 63) // 64 * 64  # Anvil's default d_ff
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d_model, intermediate_size=ff,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=a.heads, max_position_embeddings=a.seq,
                  tie_word_embeddings=True)
base = LlamaForCausalLM(cfg).float()
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
