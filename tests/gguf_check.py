"""Reads an `anvil export --format gguf` file with gguf-py (llama.cpp's own Python package) and
checks it against the HF export of the same checkpoint: metadata keys, values and types, the
tokenizer, tensor names, ggml shapes and formats, and every tensor's bytes against gguf-py's own
quantizer (bit-exact with llama.cpp's) applied to the original weights, Q/K permuted as
convert_hf_to_gguf does. Prints one summary line; any mismatch raises.

Usage: python3 gguf_check.py FILE.gguf HF_DIR QUANT
"""

import json
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType as V
from gguf.quants import dequantize, quantize

path, hf_dir, quant = sys.argv[1:4]


def safetensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + s : 8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


W = safetensors(f"{hf_dir}/model.safetensors")
cfg = json.load(open(f"{hf_dir}/config.json"))
tok = json.load(open(f"{hf_dir}/tokenizer.json"))
r = GGUFReader(path)


def field(key, vtype):
    f = r.fields[key]
    assert f.types[0] == vtype, f"{key}: {f.types} is not {vtype}"
    return f.contents()


moe = "num_local_experts" in cfg
head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
expected = {
    "general.architecture": (V.STRING, "llama"),
    "general.file_type": (V.UINT32, {"f16": 1, "q8_0": 7, "q4_0": 2}[quant]),
    "general.alignment": (V.UINT32, 32),
    "general.quantization_version": (V.UINT32, 2),
    "llama.vocab_size": (V.UINT32, cfg["vocab_size"]),
    "llama.context_length": (V.UINT32, cfg["max_position_embeddings"]),
    "llama.embedding_length": (V.UINT32, cfg["hidden_size"]),
    "llama.block_count": (V.UINT32, cfg["num_hidden_layers"]),
    "llama.feed_forward_length": (V.UINT32, cfg["intermediate_size"]),
    "llama.attention.head_count": (V.UINT32, cfg["num_attention_heads"]),
    "llama.attention.head_count_kv": (V.UINT32, cfg["num_key_value_heads"]),
    "llama.rope.dimension_count": (V.UINT32, head_dim),
    "llama.rope.freq_base": (V.FLOAT32, np.float32(cfg["rope_theta"])),
    "llama.attention.layer_norm_rms_epsilon": (V.FLOAT32, np.float32(cfg["rms_norm_eps"])),
    "tokenizer.ggml.model": (V.STRING, "gpt2"),
    "tokenizer.ggml.pre": (V.STRING, "gpt-2"),
    "tokenizer.ggml.bos_token_id": (V.UINT32, 0),
    "tokenizer.ggml.eos_token_id": (V.UINT32, 0),
    "tokenizer.ggml.eot_token_id": (V.UINT32, 0),
    "tokenizer.ggml.padding_token_id": (V.UINT32, 1),
    "tokenizer.ggml.mask_token_id": (V.UINT32, 2),
    "tokenizer.ggml.fim_pre_token_id": (V.UINT32, 3),
    "tokenizer.ggml.fim_suf_token_id": (V.UINT32, 4),
    "tokenizer.ggml.fim_mid_token_id": (V.UINT32, 5),
    "tokenizer.ggml.fim_pad_token_id": (V.UINT32, 1),
    "tokenizer.ggml.fim_sep_token_id": (V.UINT32, 6),
    "tokenizer.ggml.add_bos_token": (V.BOOL, False),
}
if moe:
    expected["llama.expert_count"] = (V.UINT32, cfg["num_local_experts"])
    expected["llama.expert_used_count"] = (V.UINT32, cfg["num_experts_per_tok"])
for key, (vtype, want) in expected.items():
    got = field(key, vtype)
    assert got == want, f"{key} = {got!r}, expected {want!r}"

# The vocabulary, by id, with the special tokens as control tokens.
by_id = {i: t for t, i in tok["model"]["vocab"].items()}
by_id.update({a["id"]: a["content"] for a in tok["added_tokens"]})
n_vocab = cfg["vocab_size"]
want_tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]
assert field("tokenizer.ggml.tokens", V.ARRAY) == want_tokens, "tokens differ"
want_types = [3 if i <= 6 else (1 if i in by_id else 5) for i in range(n_vocab)]
assert field("tokenizer.ggml.token_type", V.ARRAY) == want_types, "token types differ"
merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
assert field("tokenizer.ggml.merges", V.ARRAY) == merges, "merges differ"


def permute(w, n_head):
    # convert_hf_to_gguf's LlamaModel.permute: HF rotate-half rows to ggml's interleaved pairs.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# GGUF name -> (torch-layout data, role)
want = {}
tied = "lm_head.weight" not in W
want["token_embd.weight"] = (W["model.embed_tokens.weight"], "output" if tied else "matrix")
want["output_norm.weight"] = (W["model.norm.weight"], "vector")
if not tied:
    want["output.weight"] = (W["lm_head.weight"], "output")
names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
         "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
for n in range(cfg["num_hidden_layers"]):
    p = f"model.layers.{n}."
    want[f"blk.{n}.attn_norm.weight"] = (W[p + "input_layernorm.weight"], "vector")
    want[f"blk.{n}.ffn_norm.weight"] = (W[p + "post_attention_layernorm.weight"], "vector")
    for hf, g in names.items():
        mod = "self_attn" if hf in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        if mod == "mlp" and moe:
            continue
        w = W[f"{p}{mod}.{hf}.weight"]
        if hf == "q_proj":
            w = permute(w, cfg["num_attention_heads"])
        if hf == "k_proj":
            w = permute(w, cfg["num_key_value_heads"])
        want[f"blk.{n}.{g}.weight"] = (w, "matrix")
    if moe:
        want[f"blk.{n}.ffn_gate_inp.weight"] = (W[p + "block_sparse_moe.gate.weight"], "router")
        for wid, g in [("w1", "ffn_gate_exps"), ("w2", "ffn_down_exps"), ("w3", "ffn_up_exps")]:
            stack = [W[f"{p}block_sparse_moe.experts.{e}.{wid}.weight"] for e in range(cfg["num_local_experts"])]
            want[f"blk.{n}.{g}.weight"] = (np.stack(stack), "matrix")

got_names = [t.name for t in r.tensors]
assert sorted(got_names) == sorted(want), f"tensor names: {sorted(got_names)} vs {sorted(want)}"


def expected_type(role, row):
    if role in ("vector", "router"):
        return T.F32
    if quant == "f16":
        return T.F16
    if row % 32:
        return T.F16
    return T.Q4_0 if quant == "q4_0" and role == "matrix" else T.Q8_0


worst = {}
for t in r.tensors:
    w, role = want[t.name]
    assert list(t.shape) == list(reversed(w.shape)), f"{t.name}: ggml shape {list(t.shape)} for {w.shape}"
    ty = expected_type(role, w.shape[-1])
    assert t.tensor_type == ty, f"{t.name}: {t.tensor_type.name}, expected {ty.name}"
    if ty == T.F32:
        assert np.array_equal(t.data.reshape(w.shape), w), t.name
        continue
    ref = quantize(w, ty)
    assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8), ref.reshape(-1).view(np.uint8)), f"{t.name}: bytes differ from gguf-py's {ty.name}"
    deq = dequantize(np.asarray(t.data), ty).reshape(w.shape)
    # Error against the original, relative to the tensor's largest magnitude.
    err = float(np.abs(deq - w).max() / np.abs(w).max())
    bound = {T.F16: 2.0**-11, T.Q8_0: 0.5 / 127 + 2.0**-10, T.Q4_0: 1 / 8 + 2.0**-8}[ty]
    assert err <= bound, f"{t.name}: {ty.name} error {err} > {bound}"
    worst[ty.name] = max(worst.get(ty.name, 0.0), err)

print(f"ok {len(r.tensors)} tensors, {len(r.fields)} keys, worst relative error {worst}")
