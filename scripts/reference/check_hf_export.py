#!/usr/bin/env python3
"""Loads a folder Anvil exported (`anvil export --format hf`, or the hf_roundtrip example) with
transformers and checks it loads unchanged: no missing or unexpected weights, and — given the
fixture it came from — the same logits as the fixture's reference (1e-4).

Usage: check_hf_export.py EXPORTED_DIR [FIXTURE_DIR]
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

model, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], output_loading_info=True)
bad = {k: v for k, v in info.items() if v}
assert not bad, f"loading problems: {bad}"
print(f"{sys.argv[1]}: {type(model).__name__} loaded, {sum(p.numel() for p in model.parameters())} parameters")
if len(sys.argv) > 2:
    ref = load_file(f"{sys.argv[2]}/reference.safetensors")
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        logits = model.float().eval()(input_ids=ref["input_ids"]).logits
    diff = (logits - ref["logits"]).abs().max().item()
    print(f"max |logit difference| vs the fixture: {diff:.3e}")
    assert diff <= 1e-4
