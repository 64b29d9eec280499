//! Hugging Face format: `config.json` + `model.safetensors` that `LlamaForCausalLM` (or
//! `MixtralForCausalLM` for a mixture of experts without shared experts) loads unchanged, and
//! back. Parameter paths already are HF's names; the table below is the whole difference.

use crate::blocks::RopeScaling;
use crate::llama::{Llama, LlamaConfig};
use crate::moe::MoeConfig;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("cannot export: {0}")]
    Unsupported(String),
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> HfError {
    HfError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// HF's name for the parameter at Burn path `path`, and whether the matrix is stored transposed
/// (Burn's `Linear` keeps `[in, out]`, PyTorch's `[out, in]`).
pub fn hf_name(path: &str, mixtral: bool) -> (String, bool) {
    let mut name = path.to_string();
    if mixtral {
        // Mixtral: `block_sparse_moe.{gate, experts.E.w1 (gate), w2 (down), w3 (up)}`.
        name = name.replace(".moe.", ".block_sparse_moe.");
        if name.contains(".experts.") {
            name = name
                .replace(".gate_proj.", ".w1.")
                .replace(".down_proj.", ".w2.")
                .replace(".up_proj.", ".w3.");
        }
    } else {
        name = name.replace(".moe.", ".mlp.");
    }
    let matrix =
        path.ends_with(".weight") && !path.contains("embed_tokens") && !path.contains("norm");
    (name, matrix)
}

struct Collect {
    stack: Vec<String>,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 weights");
        self.out.push((self.stack.join("."), shape, data));
    }
}

/// Every float parameter as `(path, shape, values)`, in module order.
pub fn parameters<M: Module>(model: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut c = Collect {
        stack: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

fn transpose(shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0f32; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    (vec![c, r], out)
}

pub(crate) fn is_mixtral(c: &LlamaConfig) -> bool {
    c.moe.as_ref().is_some_and(|m| m.n_shared == 0)
}

/// HF `config.json` for `c`.
pub fn hf_config(c: &LlamaConfig) -> Result<Value, HfError> {
    if c.arch() != crate::Arch::Llama {
        return Err(HfError::Unsupported(format!(
            "transformers has no `{}` architecture (Anvil's own)",
            c.arch()
        )));
    }
    let patterns = c.patterns().map_err(|(_, m)| HfError::Unsupported(m))?;
    if let Some(p) = patterns
        .iter()
        .find(|p| **p != crate::AttentionPattern::Causal)
    {
        return Err(HfError::Unsupported(format!(
            "HF Llama has no `{p}` attention; only all-causal models export"
        )));
    }
    if c.moe.as_ref().is_some_and(|m| m.n_shared > 0) {
        return Err(HfError::Unsupported(
            "shared experts have no HF architecture that routes like Anvil's".into(),
        ));
    }
    let mut theta = c.rope_theta;
    let scaling = match c.rope_scaling {
        RopeScaling::None => Value::Null,
        // Static NTK scaling is exactly plain RoPE with a larger base.
        RopeScaling::Ntk { factor } => {
            let d = c.head_dim() as f64;
            theta *= factor.powf(d / (d - 2.0));
            Value::Null
        }
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Yarn {
            factor,
            original_max_position,
            beta_fast,
            beta_slow,
        } => json!({"rope_type": "yarn", "factor": factor,
            "original_max_position_embeddings": original_max_position,
            "beta_fast": beta_fast, "beta_slow": beta_slow}),
    };
    let mut v = json!({
        "architectures": [if is_mixtral(c) { "MixtralForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": if is_mixtral(c) { "mixtral" } else { "llama" },
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.ff_dim(),
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads(),
        "head_dim": c.head_dim(),
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": theta,
        "rope_scaling": scaling,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "initializer_range": c.init_std,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
        "torch_dtype": "float32",
        "use_cache": true,
    });
    if let Some(m) = &c.moe {
        let d_expert = if m.d_expert == 0 {
            c.ff_dim()
        } else {
            m.d_expert
        };
        v["intermediate_size"] = json!(d_expert);
        v["num_local_experts"] = json!(m.n_experts);
        v["num_experts_per_tok"] = json!(m.top_k);
        v["router_aux_loss_coef"] = json!(m.aux_loss_coef);
        v["output_router_logits"] = json!(false);
    }
    Ok(v)
}

/// Why a model with LoRA adapters attached is not exported as it is.
pub const ADAPTERS_ATTACHED: &str = "the model carries LoRA adapters: merge them into the \
    weights first (lora::merge) or save them apart in PEFT's format (peft::save_adapter)";

/// Writes `dir/config.json` and `dir/model.safetensors`.
pub fn export(model: &Llama, dir: &Path) -> Result<(), HfError> {
    if crate::lora::has_adapters(model) {
        return Err(HfError::Unsupported(ADAPTERS_ATTACHED.into()));
    }
    let model = &*crate::lora::f32_base(model);
    let config = hf_config(&model.config)?;
    std::fs::create_dir_all(dir).map_err(|err| HfError::Io {
        path: dir.into(),
        err,
    })?;
    let mixtral = is_mixtral(&model.config);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (path, shape, data) in parameters(model) {
        let (name, matrix) = hf_name(&path, mixtral);
        let (shape, data) = if matrix && shape.len() == 2 {
            transpose(&shape, &data)
        } else {
            (shape, data)
        };
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.insert(name, (shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (s, b))| {
            let view = TensorView::new(Dtype::F32, s.clone(), b).expect("consistent view");
            (n.clone(), view)
        })
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let st = dir.join("model.safetensors");
    let tmp = dir.join(".model.safetensors.tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| invalid(&st, e))?;
    std::fs::rename(&tmp, &st).map_err(|err| HfError::Io { path: st, err })?;
    let cfg = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("json");
    let tmp = dir.join(".config.json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|err| HfError::Io {
        path: tmp.clone(),
        err,
    })?;
    std::fs::rename(&tmp, &cfg).map_err(|err| HfError::Io { path: cfg, err })?;
    Ok(())
}

/// Reads an HF `config.json` (transformers 4's `rope_theta`/`rope_scaling` or 5's
/// `rope_parameters`) into a [`LlamaConfig`].
pub fn read_config(path: &Path) -> Result<LlamaConfig, HfError> {
    let text = std::fs::read_to_string(path).map_err(|err| HfError::Io {
        path: path.into(),
        err,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| invalid(path, e))?;
    let uint = |k: &str| -> Result<usize, HfError> {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| invalid(path, format!("`{k}` is missing or not a whole number")))
    };
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    if !matches!(model_type, "llama" | "mixtral") {
        return Err(invalid(
            path,
            format!("model_type `{model_type}` is not llama or mixtral"),
        ));
    }
    for k in ["attention_bias", "mlp_bias"] {
        if v.get(k).and_then(Value::as_bool) == Some(true) {
            return Err(invalid(path, format!("`{k}` = true is not supported")));
        }
    }
    if let Some(act) = v.get("hidden_act").and_then(Value::as_str)
        && act != "silu"
    {
        return Err(invalid(path, format!("hidden_act `{act}` is not silu")));
    }
    let rope = v.get("rope_parameters").filter(|r| r.is_object());
    let theta = rope
        .and_then(|r| r.get("rope_theta"))
        .or_else(|| v.get("rope_theta"))
        .and_then(Value::as_f64)
        .unwrap_or(10_000.0);
    let scaling_v = rope.or_else(|| v.get("rope_scaling").filter(|r| r.is_object()));
    let mut c = LlamaConfig {
        vocab_size: uint("vocab_size")?,
        d_model: uint("hidden_size")?,
        n_layers: uint("num_hidden_layers")?,
        n_heads: uint("num_attention_heads")?,
        n_kv_heads: v
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map_or(0, |x| x as usize),
        d_ff: uint("intermediate_size")?,
        max_seq_len: uint("max_position_embeddings")?,
        rope_theta: theta,
        rope_scaling: RopeScaling::None,
        rms_norm_eps: v
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-6),
        tie_embeddings: v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        init_std: v
            .get("initializer_range")
            .and_then(Value::as_f64)
            .unwrap_or(0.02),
        attention: vec!["causal".into()],
        tree: None,
        diffusion: None,
        moe: None,
    };
    if let Some(s) = scaling_v {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let factor = s.get("factor").and_then(Value::as_f64).unwrap_or(1.0);
        c.rope_scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor },
            "yarn" => RopeScaling::Yarn {
                factor,
                original_max_position: s
                    .get("original_max_position_embeddings")
                    .and_then(Value::as_u64)
                    .map_or(c.max_seq_len, |x| x as usize),
                beta_fast: s.get("beta_fast").and_then(Value::as_f64).unwrap_or(32.0),
                beta_slow: s.get("beta_slow").and_then(Value::as_f64).unwrap_or(1.0),
            },
            other => {
                return Err(invalid(
                    path,
                    format!("rope_type `{other}` is not supported"),
                ));
            }
        };
    }
    if let Some(hd) = v.get("head_dim").and_then(Value::as_u64)
        && hd as usize != c.head_dim()
    {
        return Err(invalid(
            path,
            format!("head_dim {hd} is not hidden_size / num_attention_heads"),
        ));
    }
    if model_type == "mixtral" {
        c.moe = Some(MoeConfig {
            n_experts: uint("num_local_experts")?,
            top_k: uint("num_experts_per_tok")?,
            n_shared: 0,
            d_expert: c.d_ff,
            aux_loss_coef: v
                .get("router_aux_loss_coef")
                .and_then(Value::as_f64)
                .unwrap_or(1e-2),
            z_loss_coef: 0.0,
        });
    }
    c.validate()
        .map_err(|(k, m)| invalid(path, format!("{k}: {m}")))?;
    Ok(c)
}

struct Load<'a> {
    stack: Vec<String>,
    tensors: &'a mut BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    mixtral: bool,
    error: Option<String>,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.stack.join(".");
        let (name, matrix) = hf_name(&path, self.mixtral);
        let Some((shape, data)) = self.tensors.remove(&name) else {
            self.error.get_or_insert(format!("no tensor `{name}`"));
            return param;
        };
        let (shape, data) = if matrix && shape.len() == 2 {
            transpose(&shape, &data)
        } else {
            (shape, data)
        };
        let (id, tensor, mapper) = param.consume();
        if shape != tensor.dims().to_vec() {
            self.error.get_or_insert(format!(
                "`{name}` has shape {shape:?}, the config needs {:?}",
                tensor.dims()
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let mut t = Tensor::<D>::from_data(TensorData::new(data, shape), &tensor.device());
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Reads every tensor of a safetensors file as f32 (f32, f16 and bf16 are accepted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>, HfError> {
    let bytes = std::fs::read(path).map_err(|err| HfError::Io {
        path: path.into(),
        err,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(invalid(
                    path,
                    format!("`{name}` has unsupported dtype {other:?}"),
                ));
            }
        };
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok(out)
}

/// Loads an HF folder (`config.json` + `model.safetensors`) onto `device`.
pub fn import(dir: &Path, device: &Device) -> Result<Llama, HfError> {
    let config = read_config(&dir.join("config.json"))?;
    crate::memory::check(&config, crate::memory::Workload::Load).map_err(|e| {
        let key = e.estimate.culprit.hf_key();
        invalid(&dir.join("config.json"), format!("`{key}`: the model {e}"))
    })?;
    let st_path = dir.join("model.safetensors");
    let mut tensors = read_safetensors(&st_path)?;
    if config.tie_embeddings {
        // transformers drops the tied head when saving; some exporters keep it.
        tensors.remove("lm_head.weight");
    }
    tensors.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    let mixtral = is_mixtral(&config);
    let model = config.init(device);
    let mut load = Load {
        stack: Vec::new(),
        tensors: &mut tensors,
        mixtral,
        error: None,
    };
    let model = model.map(&mut load);
    if let Some(e) = load.error {
        return Err(invalid(&st_path, e));
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(invalid(&st_path, format!("unexpected tensor `{extra}`")));
    }
    Ok(model)
}
