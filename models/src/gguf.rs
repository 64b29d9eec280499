//! GGUF v3 export for llama.cpp's `llama` architecture (dense Llama and Mixtral-style mixtures
//! of experts), with the tokenizer embedded, as `convert_hf_to_gguf.py` would write it from the
//! HF export: the same key names and value types, tensor names, ggml dimension order, Q/K
//! permutation and per-tensor formats (see [`quant::choose`]).

use crate::blocks::RopeScaling;
use crate::hf;
use crate::llama::{Llama, LlamaConfig};
use crate::quant::{self, GgmlType, Quant, Role};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const ALIGNMENT: u64 = 32;
const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// ggml's `GGML_QUANT_VERSION`, written by every converter.
const QUANT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("cannot export to GGUF: {0}")]
    Unsupported(String),
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> GgufError {
    GgufError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// A metadata value, typed as llama.cpp's loader expects it (it rejects a key of another type).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// One tensor ready to write: ggml dimensions (fastest-varying first) and values in that order.
pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub data: Vec<f32>,
}

/// What was written.
pub struct Summary {
    pub tensors: Vec<(String, GgmlType, Vec<u64>)>,
    pub bytes: u64,
}

/// The vocabulary part of the metadata, from a byte-level BPE `tokenizer.json`.
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
}

// gguf-py's `TokenType`.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Reads `path` for a model of `vocab_size` tokens: ids the tokenizer does not use become
/// unused `[PAD<id>]` entries, as convert_hf_to_gguf pads them.
pub fn read_vocab(path: &Path, vocab_size: usize) -> Result<Vocab, GgufError> {
    let text = std::fs::read_to_string(path).map_err(|err| GgufError::Io {
        path: path.into(),
        err,
    })?;
    let v: Json = serde_json::from_str(&text).map_err(|e| invalid(path, e))?;
    let model = &v["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(invalid(path, "`model.type` is not BPE"));
    }
    // llama.cpp's `gpt-2` pre-tokenizer is GPT-2's split regex over byte-level symbols.
    let byte_level = |p: &Json| p["type"].as_str() == Some("ByteLevel");
    let pre = &v["pre_tokenizer"];
    if !(byte_level(pre) && pre["add_prefix_space"].as_bool() != Some(true)) {
        return Err(invalid(
            path,
            "`pre_tokenizer` is not GPT-2's ByteLevel (without a prefix space), which is the \
             only pre-tokenizer this export describes to llama.cpp",
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![NORMAL; vocab_size];
    let mut put = |tok: &str, id: u64, ty: i32| -> Result<(), GgufError> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            invalid(
                path,
                format!("token `{tok}` has id {id}, past the model's vocab_size {vocab_size}"),
            )
        })?;
        *slot = Some(tok.to_string());
        types[id as usize] = ty;
        Ok(())
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| invalid(path, "`model.vocab` is not an object"))?;
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| invalid(path, format!("token `{tok}` has no integer id")))?;
        put(tok, id, NORMAL)?;
    }
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        let (Some(tok), Some(id)) = (t["content"].as_str(), t["id"].as_u64()) else {
            return Err(invalid(path, "an `added_tokens` entry lacks content or id"));
        };
        let special = t["special"].as_bool().unwrap_or(false);
        put(tok, id, if special { CONTROL } else { USER_DEFINED })?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let mut merges = Vec::new();
    for m in model["merges"].as_array().into_iter().flatten() {
        // tokenizers writes `["a", "b"]` pairs since 0.20, `"a b"` strings before.
        let merge = match m {
            Json::String(s) => s.clone(),
            Json::Array(p) if p.len() == 2 && p.iter().all(Json::is_string) => {
                format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())
            }
            other => return Err(invalid(path, format!("merge {other} is not a pair"))),
        };
        merges.push(merge);
    }
    Ok(Vocab {
        tokens,
        types,
        merges,
    })
}

/// The tokenizer keys. Anvil's special tokens, where the vocabulary has them, become llama.cpp's
/// BOS/EOS/EOT (`<|endoftext|>`), padding, mask and fill-in-the-middle ids.
fn vocab_metadata(vocab: Vocab) -> Vec<(String, Value)> {
    let id_of = |s: &str| vocab.tokens.iter().position(|t| t == s).map(|i| i as u32);
    let mut kv: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::Str("gpt-2".into())),
    ];
    let specials = [
        ("<|endoftext|>", "bos_token_id"),
        ("<|endoftext|>", "eos_token_id"),
        ("<|endoftext|>", "eot_token_id"),
        ("<|pad|>", "padding_token_id"),
        ("<|mask|>", "mask_token_id"),
        ("<|fim_prefix|>", "fim_pre_token_id"),
        ("<|fim_suffix|>", "fim_suf_token_id"),
        ("<|fim_middle|>", "fim_mid_token_id"),
        // llama.cpp pads infill prompts with this and ends generation on it, as on the file
        // separator (its FIM_SEP, which it also finds by this very spelling).
        ("<|pad|>", "fim_pad_token_id"),
        ("<|file_sep|>", "fim_sep_token_id"),
    ];
    for (tok, key) in specials {
        if let Some(id) = id_of(tok) {
            kv.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
        }
    }
    // Anvil never starts a prompt with a BOS: documents are separated by a trailing EOT.
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
    kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)));
    kv.push(("tokenizer.ggml.tokens".into(), Value::Strs(vocab.tokens)));
    kv.push(("tokenizer.ggml.token_type".into(), Value::I32s(vocab.types)));
    kv.push(("tokenizer.ggml.merges".into(), Value::Strs(vocab.merges)));
    kv
}

/// Refuses what llama.cpp's `llama` architecture cannot run as Anvil does.
pub fn check_supported(c: &LlamaConfig) -> Result<(), GgufError> {
    if c.arch() != crate::Arch::Llama {
        return Err(GgufError::Unsupported(format!(
            "llama.cpp has no `{}` architecture (Anvil's own)",
            c.arch()
        )));
    }
    let patterns = c.patterns().map_err(|(_, m)| GgufError::Unsupported(m))?;
    if let Some(p) = patterns
        .iter()
        .find(|p| **p != crate::AttentionPattern::Causal)
    {
        return Err(GgufError::Unsupported(format!(
            "llama.cpp's llama architecture has no `{p}` attention; only all-causal models export"
        )));
    }
    if c.moe.as_ref().is_some_and(|m| m.n_shared > 0) {
        return Err(GgufError::Unsupported(
            "shared experts have no llama.cpp llama-architecture equivalent".into(),
        ));
    }
    Ok(())
}

/// The model's hyperparameter keys under `general.*` and `llama.*`.
pub fn model_metadata(c: &LlamaConfig, quant: Quant, name: &str) -> Vec<(String, Value)> {
    let u = |x: usize| Value::U32(x as u32);
    let head_dim = c.head_dim();
    let mut theta = c.rope_theta;
    if let RopeScaling::Ntk { factor } = c.rope_scaling {
        // Static NTK scaling is exactly plain RoPE with a larger base.
        let d = head_dim as f64;
        theta *= factor.powf(d / (d - 2.0));
    }
    let ff = match &c.moe {
        Some(m) if m.d_expert > 0 => m.d_expert,
        _ => c.ff_dim(),
    };
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str("llama".into())),
        ("general.name".into(), Value::Str(name.into())),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        (
            "general.quantization_version".into(),
            Value::U32(QUANT_VERSION),
        ),
        ("general.alignment".into(), Value::U32(ALIGNMENT as u32)),
        ("llama.vocab_size".into(), u(c.vocab_size)),
        ("llama.context_length".into(), u(c.max_seq_len)),
        ("llama.embedding_length".into(), u(c.d_model)),
        ("llama.block_count".into(), u(c.n_layers)),
        ("llama.feed_forward_length".into(), u(ff)),
        ("llama.attention.head_count".into(), u(c.n_heads)),
        ("llama.attention.head_count_kv".into(), u(c.kv_heads())),
        ("llama.rope.freq_base".into(), Value::F32(theta as f32)),
        ("llama.rope.dimension_count".into(), u(head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(c.rms_norm_eps as f32),
        ),
    ];
    match c.rope_scaling {
        RopeScaling::None | RopeScaling::Ntk { .. } => {}
        RopeScaling::Linear { factor } => {
            kv.push((
                "llama.rope.scaling.type".into(),
                Value::Str("linear".into()),
            ));
            kv.push((
                "llama.rope.scaling.factor".into(),
                Value::F32(factor as f32),
            ));
        }
        RopeScaling::Yarn {
            factor,
            original_max_position,
            beta_fast,
            beta_slow,
        } => {
            kv.push(("llama.rope.scaling.type".into(), Value::Str("yarn".into())));
            kv.push((
                "llama.rope.scaling.factor".into(),
                Value::F32(factor as f32),
            ));
            kv.push((
                "llama.rope.scaling.original_context_length".into(),
                u(original_max_position),
            ));
            kv.push((
                "llama.rope.scaling.yarn_beta_fast".into(),
                Value::F32(beta_fast as f32),
            ));
            kv.push((
                "llama.rope.scaling.yarn_beta_slow".into(),
                Value::F32(beta_slow as f32),
            ));
        }
    }
    if let Some(m) = &c.moe {
        kv.push(("llama.expert_count".into(), u(m.n_experts)));
        kv.push(("llama.expert_used_count".into(), u(m.top_k)));
    }
    kv
}

/// Reorders the rows of a `[n_head · head_dim, cols]` projection from HF's rotate-half layout
/// (channel `i` pairs with `i + head_dim/2`) to ggml's interleaved one (`2i` with `2i + 1`):
/// convert_hf_to_gguf's `LlamaModel.permute`.
pub fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let from = h * hd + s * half + i;
                let to = h * hd + 2 * i + s;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// GGUF's name and role for an HF tensor name; experts come back as `(layer, kind, expert)`.
enum Mapped {
    Plain(String, Role),
    Expert(usize, &'static str, usize),
}

fn map_name(hf: &str, tied: bool) -> Option<Mapped> {
    match hf {
        "model.embed_tokens.weight" => {
            let role = if tied { Role::Output } else { Role::Matrix };
            return Some(Mapped::Plain("token_embd.weight".into(), role));
        }
        "model.norm.weight" => {
            return Some(Mapped::Plain("output_norm.weight".into(), Role::Vector));
        }
        "lm_head.weight" => return Some(Mapped::Plain("output.weight".into(), Role::Output)),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (n, rest) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let (short, role) = match rest {
        "self_attn.q_proj.weight" => ("attn_q", Role::Matrix),
        "self_attn.k_proj.weight" => ("attn_k", Role::Matrix),
        "self_attn.v_proj.weight" => ("attn_v", Role::Matrix),
        "self_attn.o_proj.weight" => ("attn_output", Role::Matrix),
        "input_layernorm.weight" => ("attn_norm", Role::Vector),
        "post_attention_layernorm.weight" => ("ffn_norm", Role::Vector),
        "mlp.gate_proj.weight" => ("ffn_gate", Role::Matrix),
        "mlp.up_proj.weight" => ("ffn_up", Role::Matrix),
        "mlp.down_proj.weight" => ("ffn_down", Role::Matrix),
        "block_sparse_moe.gate.weight" => ("ffn_gate_inp", Role::Router),
        _ => {
            let e = rest.strip_prefix("block_sparse_moe.experts.")?;
            let (e, w) = e.split_once('.')?;
            let kind = match w {
                "w1.weight" => "ffn_gate_exps",
                "w2.weight" => "ffn_down_exps",
                "w3.weight" => "ffn_up_exps",
                _ => return None,
            };
            return Some(Mapped::Expert(n, kind, e.parse().ok()?));
        }
    };
    Some(Mapped::Plain(format!("blk.{n}.{short}.weight"), role))
}

/// A matrix in torch layout: `(rows, cols, values)`.
type Rows = (usize, usize, Vec<f32>);

/// Every tensor of `model` named, laid out and typed for GGUF under `quant`.
pub fn tensors(model: &Llama, quant: Quant) -> Result<Vec<GgufTensor>, GgufError> {
    let c = &model.config;
    check_supported(c)?;
    if crate::lora::has_adapters(model) {
        return Err(GgufError::Unsupported(hf::ADAPTERS_ATTACHED.into()));
    }
    let model = &*crate::lora::f32_base(model);
    let mixtral = c.moe.is_some();
    let mut out = Vec::new();
    // (layer, kind) → per-expert torch-layout `[out, in]` matrices.
    let mut experts: BTreeMap<(usize, &'static str), Vec<Option<Rows>>> = BTreeMap::new();
    for (path, shape, data) in hf::parameters(model) {
        let (name, matrix) = hf::hf_name(&path, mixtral);
        // Torch layout: rows are output channels, each a run of `cols` inputs (ggml's ne0).
        let (rows, cols, mut data) = match shape.as_slice() {
            [n] => (1, *n, data),
            [a, b] if matrix => (*b, *a, transpose(*a, *b, &data)),
            [a, b] => (*a, *b, data),
            other => {
                return Err(GgufError::Unsupported(format!(
                    "`{path}` has {} dimensions",
                    other.len()
                )));
            }
        };
        match map_name(&name, c.tie_embeddings) {
            Some(Mapped::Plain(gname, role)) => {
                if gname.ends_with("attn_q.weight") {
                    data = permute_rows(&data, rows, cols, c.n_heads);
                } else if gname.ends_with("attn_k.weight") {
                    data = permute_rows(&data, rows, cols, c.kv_heads());
                }
                let dims = if shape.len() == 1 {
                    vec![cols as u64]
                } else {
                    vec![cols as u64, rows as u64]
                };
                out.push(GgufTensor {
                    name: gname,
                    dims,
                    ty: quant::choose(quant, role, cols),
                    data,
                });
            }
            Some(Mapped::Expert(layer, kind, e)) => {
                let n = c.moe.as_ref().map_or(0, |m| m.n_experts);
                let slots = experts
                    .entry((layer, kind))
                    .or_insert_with(|| vec![None; n]);
                let slot = slots.get_mut(e).ok_or_else(|| {
                    GgufError::Unsupported(format!("`{name}`: expert {e} of {n}"))
                })?;
                *slot = Some((rows, cols, data));
            }
            None => {
                return Err(GgufError::Unsupported(format!("no GGUF name for `{name}`")));
            }
        }
    }
    // llama.cpp keeps each layer's experts as one `[in, out, n_expert]` tensor per projection.
    for ((layer, kind), slots) in experts {
        let n = slots.len();
        let mut data = Vec::new();
        let (mut rows, mut cols) = (0, 0);
        for (e, s) in slots.into_iter().enumerate() {
            let (r, c, d) = s.ok_or_else(|| {
                GgufError::Unsupported(format!("layer {layer} has no `{kind}` for expert {e}"))
            })?;
            (rows, cols) = (r, c);
            data.extend(d);
        }
        out.push(GgufTensor {
            name: format!("blk.{layer}.{kind}.weight"),
            dims: vec![cols as u64, rows as u64, n as u64],
            ty: quant::choose(quant, Role::Matrix, cols),
            data,
        });
    }
    Ok(out)
}

fn transpose(r: usize, c: usize, data: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    out
}

/// Writes `model` with the vocabulary of `tokenizer` (a `tokenizer.json`) to the GGUF file
/// `out`, through a temporary file beside it, so `out` is either whole or untouched.
pub fn export(
    model: &Llama,
    tokenizer: &Path,
    quant: Quant,
    name: &str,
    out: &Path,
) -> Result<Summary, GgufError> {
    let c = &model.config;
    check_supported(c)?;
    if crate::lora::has_adapters(model) {
        return Err(GgufError::Unsupported(hf::ADAPTERS_ATTACHED.into()));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(invalid(&dir, "no such folder"));
    }
    let vocab = read_vocab(tokenizer, c.vocab_size)?;
    let mut kv = model_metadata(c, quant, name);
    kv.extend(vocab_metadata(vocab));
    let tensors = tensors(model, quant)?;
    let file_name = out
        .file_name()
        .ok_or_else(|| invalid(out, "not a file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = write_file(&tmp, &kv, &tensors);
    let result = written.and_then(|bytes| {
        std::fs::rename(&tmp, out).map_err(|err| GgufError::Io {
            path: out.into(),
            err,
        })?;
        Ok(bytes)
    });
    match result {
        Ok(bytes) => Ok(Summary {
            tensors: tensors
                .into_iter()
                .map(|t| (t.name, t.ty, t.dims))
                .collect(),
            bytes,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

struct Out<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len() as u64;
        self.w.write_all(b)
    }
    fn u32(&mut self, x: u32) -> std::io::Result<()> {
        self.bytes(&x.to_le_bytes())
    }
    fn u64(&mut self, x: u64) -> std::io::Result<()> {
        self.bytes(&x.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> std::io::Result<()> {
        self.u64(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }
    fn pad(&mut self) -> std::io::Result<()> {
        let n = self.pos.next_multiple_of(ALIGNMENT) - self.pos;
        self.bytes(&vec![0u8; n as usize])
    }
    fn value(&mut self, v: &Value) -> std::io::Result<()> {
        // gguf-py's `GGUFValueType`.
        const U32: u32 = 4;
        const I32: u32 = 5;
        const F32: u32 = 6;
        const BOOL: u32 = 7;
        const STRING: u32 = 8;
        const ARRAY: u32 = 9;
        match v {
            Value::U32(x) => {
                self.u32(U32)?;
                self.u32(*x)
            }
            Value::I32(x) => {
                self.u32(I32)?;
                self.bytes(&x.to_le_bytes())
            }
            Value::F32(x) => {
                self.u32(F32)?;
                self.bytes(&x.to_le_bytes())
            }
            Value::Bool(x) => {
                self.u32(BOOL)?;
                self.bytes(&[*x as u8])
            }
            Value::Str(s) => {
                self.u32(STRING)?;
                self.str(s)
            }
            Value::Strs(items) => {
                self.u32(ARRAY)?;
                self.u32(STRING)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|s| self.str(s))
            }
            Value::I32s(items) => {
                self.u32(ARRAY)?;
                self.u32(I32)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|x| self.bytes(&x.to_le_bytes()))
            }
        }
    }
}

/// Header, metadata, tensor infos, then each tensor's data at a 32-byte aligned offset.
/// Returns the file's size.
fn write_file(
    path: &Path,
    kv: &[(String, Value)],
    tensors: &[GgufTensor],
) -> Result<u64, GgufError> {
    let io = |err| GgufError::Io {
        path: path.into(),
        err,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut o = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
    };
    let mut write = || -> std::io::Result<()> {
        o.bytes(MAGIC)?;
        o.u32(VERSION)?;
        o.u64(tensors.len() as u64)?;
        o.u64(kv.len() as u64)?;
        for (k, v) in kv {
            o.str(k)?;
            o.value(v)?;
        }
        let mut offset = 0u64;
        for t in tensors {
            o.str(&t.name)?;
            o.u32(t.dims.len() as u32)?;
            for d in &t.dims {
                o.u64(*d)?;
            }
            o.u32(t.ty.id())?;
            o.u64(offset)?;
            offset = (offset + t.ty.bytes_for(t.data.len()) as u64).next_multiple_of(ALIGNMENT);
        }
        o.pad()?;
        for t in tensors {
            o.bytes(&t.ty.encode(&t.data))?;
            o.pad()?;
        }
        o.w.flush()?;
        o.w.get_ref().sync_all()
    };
    write().map_err(io)?;
    Ok(o.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_interleaves_the_halves_of_each_head() {
        // 2 heads of dimension 4, one column: rows h0 = [a0 a1 b0 b1], h1 = [c0 c1 d0 d1].
        let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(
            permute_rows(&x, 8, 1, 2),
            vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
        // Whole rows move.
        let y: Vec<f32> = (0..8)
            .collect::<Vec<_>>()
            .iter()
            .flat_map(|&i| [i as f32, -(i as f32)])
            .collect();
        let p = permute_rows(&y, 8, 2, 2);
        assert_eq!(&p[2..4], &[2.0, -2.0]);
    }

    #[test]
    fn vocab_pads_unused_ids_and_marks_specials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        let json = serde_json::json!({
            "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": true},
                             {"id": 3, "content": "<|fim_prefix|>", "special": true}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
            "model": {"type": "BPE", "vocab": {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 4,
                      "<|fim_prefix|>": 3}, "merges": [["a", "b"], "b b"]}
        });
        std::fs::write(&p, json.to_string()).unwrap();
        let v = read_vocab(&p, 6).unwrap();
        assert_eq!(
            v.tokens,
            ["<|endoftext|>", "a", "b", "<|fim_prefix|>", "ab", "[PAD5]"]
        );
        assert_eq!(v.types, [CONTROL, NORMAL, NORMAL, CONTROL, NORMAL, UNUSED]);
        assert_eq!(v.merges, ["a b", "b b"]);
        let kv = vocab_metadata(v);
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("tokenizer.ggml.eos_token_id"), Some(Value::U32(0)));
        assert_eq!(get("tokenizer.ggml.fim_pre_token_id"), Some(Value::U32(3)));
        assert_eq!(get("tokenizer.ggml.fim_suf_token_id"), None);
        let e = read_vocab(&p, 4).err().unwrap().to_string();
        assert!(e.contains("past the model's vocab_size 4"), "{e}");
    }

    #[test]
    fn rope_scaling_and_experts_become_llama_cpp_keys() {
        let get = |kv: &[(String, Value)], k: &str| {
            kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        };
        let mut c = LlamaConfig {
            vocab_size: 64,
            rope_scaling: RopeScaling::Yarn {
                factor: 4.0,
                original_max_position: 512,
                beta_fast: 32.0,
                beta_slow: 1.0,
            },
            ..LlamaConfig::default()
        };
        let kv = model_metadata(&c, Quant::Q4_0, "m");
        assert_eq!(get(&kv, "general.file_type"), Some(Value::U32(2)));
        assert_eq!(
            get(&kv, "llama.rope.scaling.type"),
            Some(Value::Str("yarn".into()))
        );
        assert_eq!(get(&kv, "llama.rope.scaling.factor"), Some(Value::F32(4.0)));
        assert_eq!(
            get(&kv, "llama.rope.scaling.original_context_length"),
            Some(Value::U32(512))
        );
        c.rope_scaling = RopeScaling::Ntk { factor: 2.0 };
        c.moe = Some(crate::MoeConfig {
            d_expert: 128,
            ..Default::default()
        });
        let kv = model_metadata(&c, Quant::F16, "m");
        assert_eq!(get(&kv, "llama.rope.scaling.type"), None);
        // head_dim 64: the base grows by 2^(64/62).
        let base = 10_000.0 * 2f64.powf(64.0 / 62.0);
        assert_eq!(
            get(&kv, "llama.rope.freq_base"),
            Some(Value::F32(base as f32))
        );
        assert_eq!(get(&kv, "llama.expert_count"), Some(Value::U32(8)));
        assert_eq!(get(&kv, "llama.expert_used_count"), Some(Value::U32(2)));
        assert_eq!(get(&kv, "llama.feed_forward_length"), Some(Value::U32(128)));
        c.moe.as_mut().unwrap().n_shared = 1;
        assert!(check_supported(&c).is_err());
        c.moe = None;
        c.attention = vec!["sliding:16".into()];
        let e = check_supported(&c).err().unwrap().to_string();
        assert!(e.contains("sliding:16"), "{e}");
    }
}
