#!/usr/bin/env python3
"""Reference fixtures for Anvil's Llama parity tests, made with PyTorch + HF transformers.

For each configuration this writes, under OUT/<name>/:
  config.json, model.safetensors   the initial weights, exactly as LlamaForCausalLM saves them
  reference.safetensors            input_ids [B, T] (int64), logits [B, T, V] (f32) of those
                                   weights, the 20 training batches (train_ids [S, B, T]) and the
                                   loss before each optimizer step (losses [S], f32)
  training.json                    the AdamW / schedule / clipping settings used

Anvil's tests (models/tests/parity.rs, train/tests/parity.rs) load these and must agree to
1e-4 on logits and within 1% on the 20 losses. CI needs no torch: the fixtures are committed.
Regenerate with:  python3 scripts/reference/llama_parity.py models/tests/fixtures
(needs torch and transformers; the versions used are recorded in each training.json).
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

CONFIGS = {
    # Grouped-query attention, untied head, plain RoPE.
    "llama-gqa": dict(vocab_size=384, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
    # Tied embeddings and YaRN-scaled RoPE.
    "llama-tied-yarn": dict(vocab_size=320, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                            rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                            rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                          "original_max_position_embeddings": 64}),
    # Linear position interpolation.
    "llama-linear": dict(vocab_size=256, hidden_size=32, intermediate_size=96, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         rope_scaling={"rope_type": "linear", "factor": 2.0}),
}

BATCH, SEQ, STEPS = 2, 48, 20
TRAINING = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0,
                warmup_steps=5, min_lr_ratio=0.1, max_steps=STEPS)


def lr_at(step):
    """Linear warmup then cosine decay to min_lr_ratio·lr (step is 0-based)."""
    t = TRAINING
    if step < t["warmup_steps"]:
        return t["lr"] * (step + 1) / t["warmup_steps"]
    progress = (step - t["warmup_steps"]) / max(1, t["max_steps"] - t["warmup_steps"])
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return t["lr"] * (t["min_lr_ratio"] + (1.0 - t["min_lr_ratio"]) * cosine)


def main(out):
    torch.set_num_threads(1)
    for name, cfg in CONFIGS.items():
        torch.manual_seed(1234)
        config = LlamaConfig(**cfg, hidden_act="silu", attention_bias=False, mlp_bias=False,
                             initializer_range=0.02, bos_token_id=0, eos_token_id=0,
                             pad_token_id=1)
        config._attn_implementation = "eager"
        model = LlamaForCausalLM(config).float().eval()
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)

        g = torch.Generator().manual_seed(99)
        ids = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=g)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()

        # Learnable batches (arithmetic progressions mod V with a few strides), so the loss falls
        # fast and a 1% agreement over 20 steps says something.
        starts = torch.randint(0, cfg["vocab_size"], (STEPS, BATCH, 1), generator=g)
        strides = torch.randint(1, 4, (STEPS, BATCH, 1), generator=g)
        train_ids = (starts + strides * torch.arange(SEQ)) % cfg["vocab_size"]
        model.train()
        decay, no_decay = [], []
        for pname, p in model.named_parameters():
            # Matrices decay; norms, biases and embeddings do not (Anvil's default groups).
            (decay if p.ndim == 2 and "embed_tokens" not in pname else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAINING["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=TRAINING["lr"], betas=(TRAINING["beta1"], TRAINING["beta2"]),
                                eps=TRAINING["eps"])
        losses = []
        for step in range(STEPS):
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            out_ = model(input_ids=train_ids[step], labels=train_ids[step])
            losses.append(out_.loss.item())
            opt.zero_grad()
            out_.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), TRAINING["grad_clip"])
            opt.step()

        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous(),
                   "train_ids": train_ids.contiguous(),
                   "losses": torch.tensor(losses, dtype=torch.float32)},
                  os.path.join(d, "reference.safetensors"))
        with open(os.path.join(d, "training.json"), "w") as f:
            json.dump(dict(TRAINING, batch=BATCH, seq=SEQ, steps=STEPS,
                           torch=torch.__version__, transformers=transformers.__version__),
                      f, indent=2)
        print(f"{name}: logits {tuple(logits.shape)}, loss {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/tests/fixtures")
