//! LoRA adapters on disk in Hugging Face PEFT's format, so `PeftModel.from_pretrained(base, dir)`
//! loads what Anvil trains and Anvil loads what PEFT trains:
//!
//! - `adapter_config.json`: PEFT's `LoraConfig` as its `save_pretrained` writes it.
//! - `adapter_model.safetensors`: per adapted module `base_model.model.<HF module>.lora_A.weight`
//!   (`[r, in]`) and `….lora_B.weight` (`[out, r]`), PyTorch's layout (the transposes of Burn's).
//!   HF module paths are those of the HF export ([`crate::hf::hf_name`]): Mixtral experts are
//!   `block_sparse_moe.experts.E.w1` (gate), `w2` (down), `w3` (up).
//! - `anvil_base.json` (Anvil's own, which PEFT never reads): the fingerprint of the base
//!   weights, so an adapter applied to another base can be refused. It is a separate file
//!   because PEFT before 0.13 fails on unknown keys in `adapter_config.json` and later versions
//!   warn about them.
//!
//! Loading is strict where PEFT is lenient: a tensor that adapts no module of this model, a
//! wrong shape, a targeted module missing its A or B, or a PEFT feature this computation does
//! not have (DoRA, biases, extra trained modules, per-module ranks…) is a one-line error naming
//! the key, never a silent partial load. Reference: docs/lora.md.

use crate::hf;
use crate::llama::Llama;
use crate::lora::{self, LoraAdapter, LoraConfig, TARGETS};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's pickled format, refused: unpickling can run code.
pub const PICKLE_FILE: &str = "adapter_model.bin";
pub const BASE_FILE: &str = "anvil_base.json";
/// PEFT's prefix of every key (`PeftModelForCausalLM.base_model.model`).
const PREFIX: &str = "base_model.model.";

#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{0}")]
    Unsupported(String),
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> PeftError {
    PeftError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PeftError + '_ {
    move |err| PeftError::Io {
        path: path.to_path_buf(),
        err,
    }
}

impl From<hf::HfError> for PeftError {
    fn from(e: hf::HfError) -> Self {
        match e {
            hf::HfError::Io { path, err } => PeftError::Io { path, err },
            hf::HfError::Invalid { path, msg } => PeftError::Invalid { path, msg },
            hf::HfError::Unsupported(m) => PeftError::Unsupported(m),
        }
    }
}

/// The HF module path of the projection at Burn module path `burn_path`.
fn hf_module(burn_path: &str, mixtral: bool) -> String {
    let (name, _) = hf::hf_name(&format!("{burn_path}.weight"), mixtral);
    name.strip_suffix(".weight").unwrap_or(&name).to_string()
}

/// The last component of a module path: what PEFT's `target_modules` names.
fn leaf(module: &str) -> &str {
    module.rsplit('.').next().unwrap_or(module)
}

/// PEFT's list matching: an entry names a module by its full path or by a dotted suffix.
fn list_matches(entry: &str, module: &str) -> bool {
    module == entry || module.ends_with(&format!(".{entry}"))
}

/// A projection that may carry an adapter: its HF module path and `[in, out]`.
struct Site {
    module: String,
    dims: [usize; 2],
}

fn sites(model: &mut Llama) -> Vec<Site> {
    let mixtral = hf::is_mixtral(&model.config);
    let mut out = Vec::new();
    lora::for_each_projection(model, |path, _, l| {
        out.push(Site {
            module: hf_module(path, mixtral),
            dims: l.dims(),
        })
    });
    out
}

fn f32_values(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}

/// `[r, c]` row-major → `[c, r]` row-major.
fn transpose(r: usize, c: usize, data: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = data[i * c + j];
        }
    }
    out
}

/// Writes `bytes` to `path` through a temporary file beside it, so `path` is whole or untouched.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PeftError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// `alpha` as PEFT writes `lora_alpha`: an integer when it is one.
fn alpha_json(alpha: f64) -> Value {
    if alpha.fract() == 0.0 && alpha.abs() < 1e15 {
        json!(alpha as i64)
    } else {
        json!(alpha)
    }
}

/// `adapter_config.json` for `cfg` with `targets` (PEFT names), keys sorted as PEFT writes them.
/// Only keys PEFT's `LoraConfig` has had since 0.9 are written, so older versions load it too.
fn config_json(cfg: &LoraConfig, targets: &[String], base: &str) -> Value {
    let entries: BTreeMap<&str, Value> = BTreeMap::from([
        ("alpha_pattern", json!({})),
        ("auto_mapping", Value::Null),
        ("base_model_name_or_path", json!(base)),
        ("bias", json!("none")),
        ("fan_in_fan_out", json!(false)),
        ("inference_mode", json!(true)),
        ("init_lora_weights", json!(true)),
        ("layers_pattern", Value::Null),
        ("layers_to_transform", Value::Null),
        ("loftq_config", json!({})),
        ("lora_alpha", alpha_json(cfg.alpha)),
        ("lora_dropout", json!(cfg.dropout)),
        ("megatron_config", Value::Null),
        ("megatron_core", json!("megatron.core")),
        ("modules_to_save", Value::Null),
        ("peft_type", json!("LORA")),
        ("r", json!(cfg.r)),
        ("rank_pattern", json!({})),
        ("revision", Value::Null),
        ("target_modules", json!(targets)),
        ("task_type", json!("CAUSAL_LM")),
        ("use_dora", json!(false)),
        ("use_rslora", json!(cfg.use_rslora)),
    ]);
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

/// Writes the adapters of `model` into `dir` (created if needed) as PEFT does:
/// `adapter_config.json` (with `base_model_name_or_path` = `base`),
/// `adapter_model.safetensors` (f32) and `anvil_base.json` ([`base_fingerprint`]). Each file is
/// written whole through a temporary one; the config goes last. `cfg` must be the config the
/// adapters were made with (rank and scaling are checked against them).
pub fn save_adapter(
    model: &Llama,
    cfg: &LoraConfig,
    base: &str,
    dir: &Path,
) -> Result<(), PeftError> {
    save_adapter_of(model, cfg, base, &base_fingerprint(model), dir)
}

/// [`save_adapter`] with the base's fingerprint given: computed once per run rather than per
/// checkpoint, and before a QLoRA base is quantized (the fingerprint is the f32 base's, the
/// model the adapter is later loaded onto).
pub fn save_adapter_of(
    model: &Llama,
    cfg: &LoraConfig,
    base: &str,
    fingerprint: &str,
    dir: &Path,
) -> Result<(), PeftError> {
    cfg.validate()
        .map_err(|(k, m)| PeftError::Unsupported(format!("lora.{k}: {m}")))?;
    let mixtral = hf::is_mixtral(&model.config);
    let mut m = model.clone();
    // key → (shape, f32 values in PyTorch's layout)
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut mismatch = None;
    lora::for_each_projection(&mut m, |path, _, l| {
        let Some(a) = &l.lora else { return };
        let module = hf_module(path, mixtral);
        let [d_in, d_out] = l.dims();
        let r = a.rank();
        if (r != cfg.r || a.scaling != cfg.scaling()) && mismatch.is_none() {
            mismatch = Some(format!(
                "the adapter of `{module}` has rank {r} and scaling {}, the config r = {} and \
                 scaling {}",
                a.scaling,
                cfg.r,
                cfg.scaling()
            ));
        }
        let av = transpose(d_in, r, &f32_values(a.lora_a.val()));
        let bv = transpose(r, d_out, &f32_values(a.lora_b.val()));
        tensors.insert(
            format!("{PREFIX}{module}.lora_A.weight"),
            (vec![r, d_in], av),
        );
        tensors.insert(
            format!("{PREFIX}{module}.lora_B.weight"),
            (vec![d_out, r], bv),
        );
        names.insert(leaf(&module).to_string());
    });
    if let Some(msg) = mismatch {
        return Err(PeftError::Unsupported(msg));
    }
    if tensors.is_empty() {
        return Err(PeftError::Unsupported(
            "the model carries no LoRA adapters to save".into(),
        ));
    }
    // Canonical order (q, k, v, o, gate, up, down), in the names this model has on disk.
    let order = |n: &String| {
        TARGETS
            .iter()
            .position(|t| *t == canonical(n).unwrap_or(""))
            .unwrap_or(TARGETS.len())
    };
    let mut targets: Vec<String> = names.into_iter().collect();
    targets.sort_by_key(order);

    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bytes: BTreeMap<&String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (shape, _))| {
            let view = TensorView::new(Dtype::F32, shape.clone(), &bytes[k]).expect("consistent");
            (k.clone(), view)
        })
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let st = dir.join(WEIGHTS_FILE);
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| invalid(&st, e))?;
    write_atomic(&st, &data)?;

    let record = json!({
        "base_model_name_or_path": base,
        "fingerprint": fingerprint,
        "model": crate::arch::tagged(crate::CausalLm::arch(model), &model.config),
    });
    let text = serde_json::to_string_pretty(&record).expect("json") + "\n";
    write_atomic(&dir.join(BASE_FILE), text.as_bytes())?;

    let config = config_json(cfg, &targets, base);
    let text = serde_json::to_string_pretty(&config).expect("json") + "\n";
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// The projection kind PEFT's name `name` means: itself, or Mixtral's expert names.
fn canonical(name: &str) -> Option<&'static str> {
    match name {
        "w1" => Some("gate_proj"),
        "w2" => Some("down_proj"),
        "w3" => Some("up_proj"),
        _ => TARGETS.iter().find(|t| **t == name).copied(),
    }
}

/// Which modules `adapter_config.json` targets: a list (PEFT matches each entry against the
/// module path or a dotted suffix of it), or, for a regular expression or `"all-linear"` (not
/// evaluated here), whatever the weights file holds.
enum Targets {
    List(Vec<String>),
    FromWeights,
}

/// Reads `adapter_config.json` into a [`LoraConfig`] (its `target_modules` filled in later),
/// refusing what this implementation does not compute.
fn parse_config(v: &Value, path: &Path) -> Result<(LoraConfig, Targets), PeftError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, "not a JSON object"))?;
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let is_set = |k: &str| match get(k) {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    let bad = |k: &str, m: &str| Err(invalid(path, format!("`{k}`: {m}")));
    match get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(other) => return bad("peft_type", &format!("`{other}` is not LORA")),
        None => return bad("peft_type", "missing: not a PEFT adapter config"),
    }
    let refusals: [(&str, &str); 11] = [
        ("use_dora", "DoRA (weight-decomposed LoRA) is not supported"),
        (
            "fan_in_fan_out",
            "Conv1D-style (fan_in, fan_out) weights are not supported",
        ),
        (
            "modules_to_save",
            "fully trained extra modules are not supported, only LoRA pairs",
        ),
        ("rank_pattern", "per-module ranks are not supported"),
        ("alpha_pattern", "per-module alphas are not supported"),
        (
            "layers_to_transform",
            "adapting only some layers is not supported",
        ),
        ("layer_replication", "layer replication is not supported"),
        ("exclude_modules", "excluded modules are not supported"),
        ("lora_bias", "a bias on lora_B is not supported"),
        (
            "trainable_token_indices",
            "trainable token embeddings are not supported",
        ),
        (
            "target_parameters",
            "LoRA on bare parameters is not supported",
        ),
    ];
    for (k, why) in refusals {
        if is_set(k) {
            return bad(k, why);
        }
    }
    for k in ["use_qalora", "alora_invocation_tokens"] {
        if is_set(k) {
            return bad(k, "this LoRA variant is not supported");
        }
    }
    if let Some(Value::String(init)) = get("init_lora_weights")
        && ["pissa", "olora", "loftq", "corda"]
            .iter()
            .any(|p| init.to_ascii_lowercase().starts_with(p))
    {
        return bad(
            "init_lora_weights",
            &format!("`{init}` adapts a modified base model, not the original weights"),
        );
    }
    let mut cfg = LoraConfig {
        target_modules: Vec::new(),
        ..LoraConfig::default()
    };
    if let Some(r) = get("r") {
        cfg.r = r
            .as_u64()
            .filter(|&r| r >= 1 && r as usize <= lora::MAX_RANK)
            .ok_or_else(|| invalid(path, format!("`r`: {r} is not a rank")))?
            as usize;
    }
    if let Some(a) = get("lora_alpha") {
        cfg.alpha = a
            .as_f64()
            .filter(|a| a.is_finite() && *a > 0.0)
            .ok_or_else(|| invalid(path, format!("`lora_alpha`: {a} is not a positive number")))?;
    }
    if let Some(d) = get("lora_dropout") {
        cfg.dropout = d
            .as_f64()
            .filter(|d| (0.0..1.0).contains(d))
            .ok_or_else(|| invalid(path, format!("`lora_dropout`: {d} is not in [0, 1)")))?;
    }
    if let Some(b) = get("use_rslora") {
        cfg.use_rslora = b
            .as_bool()
            .ok_or_else(|| invalid(path, "`use_rslora`: not true or false"))?;
    }
    if let Some(b) = get("bias") {
        match b.as_str() {
            Some("none") => {}
            _ => return bad("bias", &format!("{b}: only \"none\" is supported")),
        }
    }
    let targets = match get("target_modules") {
        Some(Value::Array(a)) => Targets::List(
            a.iter()
                .map(|t| t.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(path, "`target_modules`: not a list of names"))?,
        ),
        Some(Value::String(_)) | None => Targets::FromWeights,
        Some(other) => {
            return bad(
                "target_modules",
                &format!("{other} is not a list or a string"),
            );
        }
    };
    Ok((cfg, targets))
}

/// `(module, is_a)` of a PEFT key.
fn parse_key(key: &str) -> Option<(&str, bool)> {
    let rest = key.strip_prefix(PREFIX)?;
    if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        Some((m, true))
    } else {
        rest.strip_suffix(".lora_B.weight").map(|m| (m, false))
    }
}

/// The adapter in `dir` (PEFT's format, written by PEFT or by [`save_adapter`]) attached to
/// `model`, whose base is then frozen ([`lora::freeze_base`]); adapters it had are removed
/// first. Returns the adapter's [`LoraConfig`], `target_modules` being the kinds it adapts.
/// f32, f16 and bf16 weights are read (as f32). Whether `dir` was trained on this base is
/// [`check_base`]'s question.
pub fn load_adapter(model: Llama, dir: &Path) -> Result<(Llama, LoraConfig), PeftError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| invalid(&cfg_path, e))?;
    let (mut cfg, targets) = parse_config(&v, &cfg_path)?;
    let st_path = dir.join(WEIGHTS_FILE);
    if !st_path.is_file() {
        let pickle = dir.join(PICKLE_FILE);
        if pickle.exists() {
            return Err(invalid(
                &pickle,
                "pickled weights are not read (unpickling can run code): save the adapter with \
                 safetensors (PEFT's default, save_pretrained(safe_serialization=True))",
            ));
        }
        return Err(invalid(&st_path, "no such file"));
    }
    let tensors = hf::read_safetensors(&st_path)?;
    let bad = |msg: String| Err(invalid(&st_path, msg));

    let mut model = lora::remove_adapters(model);
    let sites = sites(&mut model);
    let by_module: BTreeMap<&str, &Site> = sites.iter().map(|s| (s.module.as_str(), s)).collect();
    let targeted = |s: &Site| match &targets {
        Targets::List(list) => list.iter().any(|e| list_matches(e, &s.module)),
        Targets::FromWeights => true,
    };
    // module → (A, B) in the file's layout
    let mut found: BTreeMap<String, [Option<Vec<f32>>; 2]> = BTreeMap::new();
    let r = cfg.r;
    for (key, (shape, data)) in tensors {
        let Some((module, is_a)) = parse_key(&key) else {
            return bad(format!(
                "`{key}` is not a LoRA weight (expected {PREFIX}<module>.lora_A.weight or \
                 .lora_B.weight)"
            ));
        };
        let Some(site) = by_module.get(module) else {
            return bad(format!(
                "`{key}`: this model has no module `{module}` that takes an adapter (Anvil \
                 adapts {}; w1 w2 w3 in Mixtral experts)",
                TARGETS.join(" ")
            ));
        };
        if !targeted(site) {
            return bad(format!(
                "`{key}`: `{module}` is not in the config's target_modules"
            ));
        }
        let [d_in, d_out] = site.dims;
        let want = if is_a { vec![r, d_in] } else { vec![d_out, r] };
        if shape != want {
            return bad(format!(
                "`{key}` has shape {shape:?}, this model needs {want:?} (r = {r})"
            ));
        }
        found.entry(module.to_string()).or_default()[usize::from(!is_a)] = Some(data);
    }
    let mut any = false;
    for s in &sites {
        let present = found.contains_key(&s.module);
        if !(present || (matches!(targets, Targets::List(_)) && targeted(s))) {
            continue;
        }
        any = true;
        let pair = found.get(&s.module);
        for (i, which) in ["lora_A", "lora_B"].iter().enumerate() {
            if pair.is_none_or(|p| p[i].is_none()) {
                return bad(format!(
                    "`{PREFIX}{}.{which}.weight` is missing (`{}` is a target)",
                    s.module, s.module
                ));
            }
        }
    }
    if !any {
        return bad(match &targets {
            Targets::List(l) => format!(
                "target_modules {l:?} name no module of this model, and the file holds no weights"
            ),
            Targets::FromWeights => "the file holds no LoRA weights".into(),
        });
    }

    let device = model.device();
    let mixtral = hf::is_mixtral(&model.config);
    let mut kinds = BTreeSet::new();
    let scaling_cfg = cfg.clone();
    lora::for_each_projection(&mut model, |path, kind, l| {
        let Some([Some(a), Some(b)]) = found.remove(&hf_module(path, mixtral)) else {
            return;
        };
        let [d_in, d_out] = l.dims();
        let a = TensorData::new(transpose(r, d_in, &a), [d_in, r]);
        let b = TensorData::new(transpose(d_out, r, &b), [r, d_out]);
        l.lora = Some(LoraAdapter::from_tensors(
            Tensor::from_data(a, &device),
            Tensor::from_data(b, &device),
            &scaling_cfg,
        ));
        kinds.insert(kind);
    });
    cfg.target_modules = TARGETS
        .iter()
        .filter(|t| kinds.contains(*t))
        .map(|t| t.to_string())
        .collect();
    cfg.validate()
        .map_err(|(k, m)| invalid(&cfg_path, format!("`{k}`: {m}")))?;
    Ok((lora::freeze_base(model), cfg))
}

/// A fingerprint of `model`'s base weights: xxh3-128 over every non-adapter parameter's path,
/// shape and f32 bytes, in module order. Any change to any base weight changes it; adapters do
/// not. Hyperparameters that hold no weights (RoPE θ, norm ε) are not in it.
pub fn base_fingerprint(model: &Llama) -> String {
    // Over the f32 values as loaded: a quantized base hashes as its dequantized weights, the
    // model an adapter trained on it is loaded onto.
    let model = &*lora::f32_base(model);
    struct Hash {
        stack: Vec<String>,
        h: xxhash_rust::xxh3::Xxh3Default,
    }
    impl ModuleVisitor for Hash {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let path = self.stack.join(".");
            if lora::is_adapter_path(&path) {
                return;
            }
            let t = p.val();
            self.h.update(path.as_bytes());
            self.h.update(&[0]);
            for d in t.dims() {
                self.h.update(&(d as u64).to_le_bytes());
            }
            let data = t.into_data().convert::<f32>();
            if cfg!(target_endian = "little") {
                self.h.update(data.as_bytes());
            } else {
                let v = data.as_slice::<f32>().expect("f32");
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                self.h.update(&bytes);
            }
        }
    }
    let mut h = Hash {
        stack: Vec::new(),
        h: xxhash_rust::xxh3::Xxh3Default::new(),
    };
    model.visit(&mut h);
    format!("xxh3-128:{:032x}", h.h.digest128())
}

/// What `anvil_base.json` records: the base's name and weight fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseRecord {
    pub base_model_name_or_path: String,
    pub fingerprint: String,
}

/// `dir/anvil_base.json`, or `None` for an adapter written by PEFT (which records only
/// `base_model_name_or_path`, in `adapter_config.json`).
pub fn read_base(dir: &Path) -> Result<Option<BaseRecord>, PeftError> {
    let p = dir.join(BASE_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| invalid(&p, e))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| invalid(&p, format!("`{k}` is missing or not a string")))
    };
    Ok(Some(BaseRecord {
        base_model_name_or_path: field("base_model_name_or_path")?,
        fingerprint: field("fingerprint")?,
    }))
}

/// Whether the adapter in `dir` was trained on `model`'s base: `Ok(true)` when its fingerprint
/// matches, `Ok(false)` when it records none (a PEFT-made adapter), `Err` when it names another
/// base.
pub fn check_base(model: &Llama, dir: &Path) -> Result<bool, PeftError> {
    if read_base(dir)?.is_none() {
        return Ok(false);
    }
    check_fingerprint(&base_fingerprint(model), dir)
}

/// [`check_base`] for a base whose fingerprint is already known.
pub fn check_fingerprint(here: &str, dir: &Path) -> Result<bool, PeftError> {
    let Some(rec) = read_base(dir)? else {
        return Ok(false);
    };
    if rec.fingerprint != here {
        return Err(invalid(
            &dir.join(BASE_FILE),
            format!(
                "the adapter was trained on another base (`{}`, fingerprint {}; this model's is \
                 {here})",
                rec.base_model_name_or_path, rec.fingerprint
            ),
        ));
    }
    Ok(true)
}
