#!/usr/bin/env python3
"""Reference fixtures for LoRA interoperability with PEFT (models/tests/peft_interop.rs).

On the `llama-gqa` parity base (models/tests/fixtures/llama-gqa, an HF folder), this writes:
  peft/peft-written/   an adapter made and saved by PEFT itself (rsLoRA, r=4, q/v/down_proj,
                       B drawn from a seeded normal so it is not the zero init) and
                       logits.safetensors: input_ids [B, T] (as f32) and PEFT's logits [B, T, V]
  peft/anvil-written/  logits.safetensors: PEFT's logits with the adapter Anvil wrote there
                       (`cargo test -p anvil-models --test peft_interop -- --ignored` writes it)

Anvil must give the same logits within 1e-4 for both. CI needs no torch: the fixtures are
committed. Regenerate with (torch, transformers and peft installed, e.g. the benchmark venv):
  python3 scripts/reference/peft_adapters.py models/tests/fixtures
The library versions used are recorded in each folder's versions.json.
"""
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM


def base(fixtures):
    model = LlamaForCausalLM.from_pretrained(os.path.join(fixtures, "llama-gqa"),
                                             torch_dtype=torch.float32)
    return model.eval()


def write_logits(model, ids, out):
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    save_file({"input_ids": ids.float().contiguous(), "logits": logits},
              os.path.join(out, "logits.safetensors"))
    with open(os.path.join(out, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "peft": peft.__version__}, f, indent=2)


def main(fixtures):
    torch.manual_seed(0)
    ids = load_file(os.path.join(fixtures, "llama-gqa", "reference.safetensors"))["input_ids"]

    out = os.path.join(fixtures, "peft", "peft-written")
    os.makedirs(out, exist_ok=True)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True, bias="none",
                     target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base(fixtures), cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    model.eval()
    model.save_pretrained(out)
    write_logits(model, ids, out)

    out = os.path.join(fixtures, "peft", "anvil-written")
    if not os.path.exists(os.path.join(out, "adapter_config.json")):
        sys.exit(f"{out}: no adapter; run the ignored Rust test that writes it first")
    model = PeftModel.from_pretrained(base(fixtures), out).eval()
    write_logits(model, ids, out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/tests/fixtures")
