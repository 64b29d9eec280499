//! A model on disk in Anvil's own layout: `model.json` (the [`LlamaConfig`]) next to
//! `model.bpk` (Burn's burnpack). Checkpoint folders hold both, so any of them loads alone.
//!
//! A quantized folder (see [`crate::store_quant`]) has the same two files plus `quant.json`;
//! [`load`] reads either kind.

use crate::CausalLm;
use crate::llama::{Llama, LlamaConfig};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "model.bpk";
/// The folder of a run that holds its checkpoints, `step-NNNNNN` each.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// A checkpoint's folder name in a run's [`CHECKPOINTS_DIR`].
pub fn step_name(step: usize) -> String {
    format!("step-{step:06}")
}

/// The `step-N` folders in `dir` (a run's [`CHECKPOINTS_DIR`]), oldest first; whether each is
/// complete is the caller's question (the trainer wants its state, a reader its weights).
pub fn step_dirs(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Writes `dir/model.json`: the model's config, tagged with its architecture.
pub fn write_config<M: CausalLm>(model: &M, dir: &Path) -> Result<(), StoreError> {
    let cfg = dir.join(CONFIG_FILE);
    let tagged = crate::arch::tagged(model.arch(), model.config());
    let json = serde_json::to_vec_pretty(&tagged).expect("config serializes");
    std::fs::write(&cfg, json).map_err(|err| StoreError::Io { path: cfg, err })
}

/// Writes `dir/model.json` and `dir/model.bpk` (the folder must exist).
pub fn save(model: &Llama, dir: &Path) -> Result<(), StoreError> {
    let model = &*crate::lora::f32_base(model);
    write_config(model, dir)?;
    let w = dir.join(WEIGHTS_FILE);
    model
        .clone()
        .save_file(&w)
        .map_err(|e| invalid(&w, format!("{e:?}")))
}

/// Reads the config of the model in `dir`.
pub fn read_config(dir: &Path) -> Result<LlamaConfig, StoreError> {
    let p = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&p).map_err(|err| StoreError::Io {
        path: p.clone(),
        err,
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&p, e))?;
    let (arch, fields) = crate::arch::untag(v).map_err(|e| invalid(&p, e))?;
    let mut c: LlamaConfig = serde_json::from_value(fields).map_err(|e| invalid(&p, e))?;
    c.set_arch(arch).map_err(|e| invalid(&p, e))?;
    c.validate()
        .map_err(|(k, m)| invalid(&p, format!("`{k}`: {m}")))?;
    if c.vocab_size == 0 {
        return Err(invalid(&p, "`vocab_size` is 0"));
    }
    Ok(c)
}

/// Loads the weights in `dir` into `model` (same architecture).
pub fn load_weights(model: Llama, dir: &Path) -> Result<Llama, StoreError> {
    let p = dir.join(WEIGHTS_FILE);
    if !p.is_file() {
        return Err(invalid(&p, "no such file"));
    }
    model
        .try_load_file(&p)
        .map_err(|e| invalid(&p, format!("not a checkpoint of this model: {e:?}")))
}

/// Loads the model in `dir` onto `device`. In a quantized folder the decoder's projections
/// stay in their Q8_0/Q4_0 blocks ([`crate::LoraLinear::quant`], multiplied by the int8
/// kernels); everything else (embeddings, LM head, norms, routers) comes back as f32.
pub fn load(dir: &Path, device: &Device) -> Result<Llama, StoreError> {
    let config = read_config(dir)?;
    crate::memory::check(&config, crate::memory::Workload::Load).map_err(|e| {
        let key = e.estimate.culprit.model_json_key();
        invalid(&dir.join(CONFIG_FILE), format!("`{key}`: the model {e}"))
    })?;
    let info = crate::store_quant::read_info(dir)?;
    let mut model = load_weights(config.init(device), dir)?;
    if let Some(info) = info {
        // One projection at a time, so the f32 copy of the whole model never exists.
        crate::lora::for_each_projection(&mut model, |path, _, l| {
            let ty = info
                .tensors
                .get(&format!("{path}.weight"))
                .map(String::as_str);
            match ty {
                Some("Q8_0") => l.quantize(crate::quant::GgmlType::Q8_0),
                Some("Q4_0") => l.quantize(crate::quant::GgmlType::Q4_0),
                _ => false,
            };
        });
        model = model.map(&mut Dequantize);
    }
    Ok(model)
}

/// Turns every quantized parameter back into an f32 one.
struct Dequantize;

impl ModuleMapper for Dequantize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            if matches!(t.dtype(), DType::QFloat(_)) {
                t.dequantize()
            } else {
                t
            }
        })
    }
}
