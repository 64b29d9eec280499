"""The Llama shape the benchmarks compare, as HF transformers builds it: one place for the
command-line flags and the config (Anvil's default d_ff, tied embeddings, plain multi-head)."""
from transformers import LlamaConfig, LlamaForCausalLM


def add_shape_args(p, steps=30, warmup=5):
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)


def model(a):
    ff = (8 * a.d_model // 3 + 63) // 64 * 64  # Anvil's default d_ff
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d_model, intermediate_size=ff,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.heads, max_position_embeddings=a.seq,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).float()
