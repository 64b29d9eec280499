"""HF transformers reference for scripts/bench/decode_throughput.sh: batch-1 greedy decoding of
the same weights (an `anvil export --format hf` folder) with `generate` and its KV cache.

Prints one JSON line: prefill tokens/s (one forward over the prompt), decode tokens/s (new tokens
after the first, from generate(N) minus generate(1)), and the greedy token ids.
"""

import argparse
import json
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
    tok.encode_special_tokens = True
    ids = tok.encode(open(a.prompt_file).read(), add_special_tokens=False).ids
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval().to(a.device)
    x = torch.tensor([ids]).to(a.device)
    # GPU work is asynchronous: every timing ends when the device is done.
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def gen(n):
        return model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )

    best = {"prefill": 0.0, "decode": 0.0}
    with torch.inference_mode():
        gen(4)  # warm-up
        for _ in range(a.reps):
            sync()
            t = time.perf_counter()
            model(x, use_cache=True)
            sync()
            prefill = time.perf_counter() - t
            t = time.perf_counter()
            gen(1)
            sync()
            one = time.perf_counter() - t
            t = time.perf_counter()
            out = gen(a.max_tokens)
            sync()
            full = time.perf_counter() - t
            best["prefill"] = max(best["prefill"], len(ids) / prefill)
            best["decode"] = max(best["decode"], (a.max_tokens - 1) / (full - one))
    print(
        json.dumps(
            {
                "prompt_tokens": len(ids),
                "device": a.device,
                "prefill_tokens_per_second": best["prefill"],
                "decode_tokens_per_second": best["decode"],
                "token_ids": out[0, len(ids):].tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
