//! Finding and loading a model with its tokenizer: an Anvil checkpoint folder (`model.json` +
//! `model.bpk`, quantized or not), a run folder (its newest checkpoint), a Hugging Face folder
//! (`config.json` + `model.safetensors`), or a LoRA adapter folder in PEFT's format
//! (`adapter_config.json` + `adapter_model.safetensors`, what a LoRA training run checkpoints),
//! applied to its base; each with a `tokenizer.json` beside it or in the run.
//!
//! This module is the one owner of "open a checkpoint and find its tokenizer": `generate`,
//! `serve`, `eval` and `export` all come through [`load_weights`] / [`load_adapted`], so an
//! adapter is found, checked and applied the same way everywhere. [`load`] and [`load_model`]
//! keep their contract of a full model (the trainer's `model.init_from` uses them) and refuse an
//! adapter with one line saying to merge it.

use crate::InferError;
use anvil_models::generation::GenerationConfig;
use anvil_models::lora::LoraConfig;
use anvil_models::{Llama, hf, peft, store};
use burn::tensor::Device;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A model ready for decoding.
pub struct Loaded {
    pub model: Llama,
    /// The folder the base weights came from (with an adapter, its base's).
    pub checkpoint: PathBuf,
    /// The LoRA adapter applied (unmerged) on top of the base, if any.
    pub adapter: Option<Adapter>,
    pub tokenizer: Tokenizer,
    pub tokenizer_path: PathBuf,
    /// Token ids that end a sequence.
    pub eos: Vec<u32>,
    /// The defaults the adapter's (else the checkpoint's) `generation_config.json` records.
    pub generation: GenerationConfig,
}

/// A LoRA adapter attached to the loaded base.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The folder holding `adapter_config.json` and `adapter_model.safetensors`.
    pub dir: PathBuf,
    /// Its config as read (`target_modules` = the projection kinds it adapts), what
    /// `peft::save_adapter` needs to write it again.
    pub config: LoraConfig,
    /// Whether `anvil_base.json`'s fingerprint was checked against the base (false: an adapter
    /// PEFT wrote, which records no fingerprint).
    pub base_checked: bool,
}

/// Weights without a tokenizer: what [`load_weights`] returns.
pub struct Weights {
    pub model: Llama,
    /// The folder the base weights came from.
    pub checkpoint: PathBuf,
    pub adapter: Option<Adapter>,
}

impl Weights {
    /// The `tokenizer.json` that goes with these weights: beside the adapter or in its run
    /// (a fine-tune may have changed nothing about the tokenizer, but its run records the one it
    /// used), else the base's.
    pub fn find_tokenizer(&self) -> Option<PathBuf> {
        self.adapter
            .as_ref()
            .and_then(|a| find_tokenizer(&a.dir))
            .or_else(|| find_tokenizer(&self.checkpoint))
    }
}

/// What kind of folder holds the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Anvil,
    HuggingFace,
    /// A LoRA adapter in PEFT's format: only the adapter; the base is elsewhere.
    Adapter,
}

/// The layout of the folder `p`, if it holds weights. A full checkpoint wins over adapter files
/// beside it. `adapter_model.bin` alone counts as an adapter so that loading it fails with why
/// (pickle is refused) rather than with "not a checkpoint".
fn layout_of(p: &Path) -> Option<Layout> {
    if p.join(store::WEIGHTS_FILE).is_file() {
        Some(Layout::Anvil)
    } else if p.join("config.json").is_file() && p.join("model.safetensors").is_file() {
        Some(Layout::HuggingFace)
    } else if p.join(peft::CONFIG_FILE).is_file()
        && (p.join(peft::WEIGHTS_FILE).is_file() || p.join(peft::PICKLE_FILE).is_file())
    {
        Some(Layout::Adapter)
    } else {
        None
    }
}

/// The folder holding the weights `path` names: itself, or a run folder's newest checkpoint.
pub fn resolve(path: &Path) -> Result<(PathBuf, Layout), InferError> {
    if let Some(l) = layout_of(path) {
        return Ok((path.to_path_buf(), l));
    }
    if !path.is_dir() {
        return Err(InferError::load(path, "no such folder"));
    }
    // A run folder: its newest checkpoint that holds weights (or, for a LoRA run, an adapter).
    let newest = store::step_dirs(&path.join(store::CHECKPOINTS_DIR))
        .into_iter()
        .rev()
        .find_map(|(_, p)| layout_of(&p).map(|l| (p, l)));
    match newest {
        Some((p, l)) => Ok((p, l)),
        None => Err(InferError::load(
            path,
            "neither a checkpoint (model.bpk, config.json + model.safetensors, or a LoRA \
             adapter's adapter_config.json + adapter_model.safetensors) nor a run folder with \
             checkpoints",
        )),
    }
}

/// The `tokenizer.json` that goes with the weights in `ckpt`: beside them, or in the run folder
/// (`<run>/checkpoints/<ckpt>`) or its `artifacts/`.
pub fn find_tokenizer(ckpt: &Path) -> Option<PathBuf> {
    ckpt.ancestors()
        .take(3)
        .flat_map(|d| [d.join("tokenizer.json"), d.join("artifacts/tokenizer.json")])
        .find(|p| p.is_file())
}

/// A `PeftError` as a load error without repeating the path (its own message names the file).
fn peft_err(dir: &Path, e: peft::PeftError) -> InferError {
    match e {
        peft::PeftError::Io { path, err } => InferError::load(&path, err),
        peft::PeftError::Invalid { path, msg } => InferError::Load { path, msg },
        peft::PeftError::Unsupported(msg) => InferError::load(dir, msg),
    }
}

/// The base an adapter records: `anvil_base.json`'s `base_model_name_or_path` (Anvil's trainer
/// writes the absolute path of the folder it started from), else `adapter_config.json`'s (PEFT's,
/// often a Hub name). `None` when neither names one.
fn recorded_base(dir: &Path) -> Result<Option<String>, InferError> {
    if let Some(rec) = peft::read_base(dir).map_err(|e| peft_err(dir, e))? {
        return Ok(Some(rec.base_model_name_or_path));
    }
    let p = dir.join(peft::CONFIG_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| InferError::load(&p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| InferError::load(&p, e))?;
    Ok(v.get("base_model_name_or_path")
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty())
        .map(String::from))
}

/// The base folder of the adapter in `dir` when it is loaded alone: the recorded base, which
/// must be a local folder (a Hub name is not downloaded).
fn base_of(dir: &Path) -> Result<PathBuf, InferError> {
    let hint = format!(
        "pass the base with --checkpoint BASE --adapter {}",
        dir.display()
    );
    match recorded_base(dir)? {
        Some(b) if Path::new(&b).is_dir() => Ok(PathBuf::from(b)),
        Some(b) => Err(InferError::load(
            dir,
            format!("a LoRA adapter whose base `{b}` is not a local folder: {hint}"),
        )),
        None => Err(InferError::load(
            dir,
            format!("a LoRA adapter that records no base: {hint}"),
        )),
    }
}

/// The adapter folder `path` names: itself, or a LoRA run folder's newest checkpoint.
fn resolve_adapter(path: &Path) -> Result<PathBuf, InferError> {
    match resolve(path) {
        Ok((dir, Layout::Adapter)) => Ok(dir),
        Ok((dir, _)) => Err(InferError::load(
            &dir,
            "--adapter: a full model checkpoint, not a LoRA adapter (adapter_config.json + \
             adapter_model.safetensors); pass it as --checkpoint",
        )),
        Err(_) if !path.exists() => Err(InferError::load(path, "--adapter: no such folder")),
        Err(_) => Err(InferError::load(
            path,
            "--adapter: neither a LoRA adapter folder (adapter_config.json + \
             adapter_model.safetensors) nor a run folder with adapter checkpoints",
        )),
    }
}

/// The base model (no adapter) in the checkpoint folder `ckpt` of layout `layout`.
fn load_base(ckpt: &Path, layout: Layout, device: &Device) -> Result<Llama, InferError> {
    match layout {
        Layout::Anvil => store::load(ckpt, device).map_err(|e| InferError::load(ckpt, e)),
        Layout::HuggingFace => hf::import(ckpt, device).map_err(|e| InferError::load(ckpt, e)),
        Layout::Adapter => Err(InferError::load(
            ckpt,
            "the base of a LoRA adapter is itself an adapter; pass a full model as --checkpoint",
        )),
    }
}

/// Attaches the adapter in `dir` to `base`: the recorded base fingerprint is checked first (so a
/// mismatched base is named as such rather than as a shape error), then every tensor is checked
/// against a module of the model (`peft::load_adapter` refuses partial or mismatched adapters).
fn attach(base: Llama, dir: &Path) -> Result<(Llama, Adapter), InferError> {
    let base_checked = peft::check_base(&base, dir).map_err(|e| peft_err(dir, e))?;
    let (model, config) = peft::load_adapter(base, dir).map_err(|e| peft_err(dir, e))?;
    if !base_checked {
        // Not an error: adapters PEFT wrote carry no fingerprint. But the user should know the
        // pairing was taken on trust.
        eprintln!(
            "note: {}: no {} (an adapter written by PEFT), so its base is not verified",
            dir.display(),
            peft::BASE_FILE
        );
    }
    let adapter = Adapter {
        dir: dir.to_path_buf(),
        config,
        base_checked,
    };
    Ok((model, adapter))
}

/// Loads the weights `checkpoint` names (a checkpoint, a run folder, an HF folder, or a LoRA
/// adapter folder or run, whose recorded base is loaded under it), plus the LoRA adapter
/// `adapter` names (an adapter folder or a LoRA run) when given. Adapters stay unmerged: the
/// result computes `x·W + x·A·B·scaling` exactly as in training. No tokenizer is needed.
pub fn load_weights(
    checkpoint: &Path,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<Weights, InferError> {
    let (ckpt, layout) = resolve(checkpoint)?;
    // Everything is found (and the adapter's folder checked) before the slow base load; the
    // memory check before allocating happens inside the store/HF loaders, as without adapters.
    let (base_ckpt, base_layout, adapter_dir) = match (layout, adapter) {
        (Layout::Adapter, Some(_)) => {
            return Err(InferError::load(
                &ckpt,
                "--checkpoint is already a LoRA adapter, so --adapter is ambiguous: pass its \
                 base as --checkpoint, or drop --adapter",
            ));
        }
        (Layout::Adapter, None) => {
            let base = base_of(&ckpt)?;
            let (b, l) = resolve(&base).map_err(|e| match e {
                InferError::Load { path, msg } => InferError::load(
                    &path,
                    format!("the base recorded by {}: {msg}", ckpt.display()),
                ),
                e => e,
            })?;
            (b, l, Some(ckpt))
        }
        (_, Some(a)) => (ckpt, layout, Some(resolve_adapter(a)?)),
        (_, None) => (ckpt, layout, None),
    };
    let base = load_base(&base_ckpt, base_layout, device)?;
    let (model, adapter) = match adapter_dir {
        Some(dir) => {
            let (m, a) = attach(base, &dir)?;
            (m, Some(a))
        }
        None => (base, None),
    };
    Ok(Weights {
        model,
        checkpoint: base_ckpt,
        adapter,
    })
}

/// Refuses an adapter folder or LoRA run where a caller needs a full model: the trainer's
/// `model.init_from`, say, which would otherwise train (and save) a model that still carries
/// adapters nothing loads. [`load_weights`] and [`load_adapted`] take adapters.
fn full_model_only(path: &Path) -> Result<(), InferError> {
    if let Ok((dir, Layout::Adapter)) = resolve(path) {
        return Err(InferError::load(
            &dir,
            format!(
                "a LoRA adapter, not a full model: merge it into its base first (anvil export \
                 --checkpoint {} --merge --format hf --out DIR)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Loads the weights of a full model only (no tokenizer needed), on `device`; an adapter is
/// refused ([`load_weights`] takes one). Returns the model and its folder.
pub fn load_model(path: &Path, device: &Device) -> Result<(Llama, PathBuf), InferError> {
    full_model_only(path)?;
    let w = load_weights(path, None, device)?;
    Ok((w.model, w.checkpoint))
}

/// Loads a full model's weights and tokenizer (an adapter is refused: see [`load_adapted`]).
/// `tokenizer` overrides where the tokenizer is looked for.
pub fn load(path: &Path, tokenizer: Option<&Path>, device: &Device) -> Result<Loaded, InferError> {
    full_model_only(path)?;
    load_adapted(path, None, tokenizer, device)
}

/// [`load_weights`] with the tokenizer: `tokenizer` when given, else the one beside the adapter
/// or in its run, else the base's.
pub fn load_adapted(
    path: &Path,
    adapter: Option<&Path>,
    tokenizer: Option<&Path>,
    device: &Device,
) -> Result<Loaded, InferError> {
    let w = load_weights(path, adapter, device)?;
    let tokenizer_path = match tokenizer {
        Some(t) => t.to_path_buf(),
        None => w.find_tokenizer().ok_or_else(|| {
            let at = w.adapter.as_ref().map_or(&w.checkpoint, |a| &a.dir);
            InferError::load(
                at,
                "no tokenizer.json beside the weights or in the run folder (pass --tokenizer)",
            )
        })?,
    };
    let (tokenizer, eos) = load_tokenizer(&tokenizer_path)?;
    let vocab = tokenizer.get_vocab_size(true);
    if let Some(why) = anvil_models::vocab_mismatch(vocab, w.model.config.vocab_size) {
        return Err(InferError::load(&tokenizer_path, why));
    }
    let generation = GenerationConfig::read(w.adapter.as_ref().map_or(&w.checkpoint, |a| &a.dir));
    Ok(Loaded {
        model: w.model,
        checkpoint: w.checkpoint,
        adapter: w.adapter,
        tokenizer,
        tokenizer_path,
        eos,
        generation,
    })
}

/// An Anvil tokenizer (special tokens at their fixed ids), or any byte-level `tokenizer.json`
/// whose end-of-sequence token is one of the usual spellings. Special-token strings in prompts
/// stay plain text either way.
pub fn load_tokenizer(path: &Path) -> Result<(Tokenizer, Vec<u32>), InferError> {
    if let Ok(t) = anvil_data::tokenizer::load(path) {
        return Ok((t, vec![anvil_data::tokenizer::EOT_ID]));
    }
    let mut t = Tokenizer::from_file(path).map_err(|e| InferError::load(path, e))?;
    t.set_encode_special_tokens(true);
    let eos: Vec<u32> = [
        "<|endoftext|>",
        "</s>",
        "<|end_of_text|>",
        "<|im_end|>",
        "<eos>",
    ]
    .iter()
    .filter_map(|s| t.token_to_id(s))
    .collect();
    if eos.is_empty() {
        return Err(InferError::load(
            path,
            "no end-of-sequence token (<|endoftext|>, </s>, <|end_of_text|>, <|im_end|>, <eos>)",
        ));
    }
    Ok((t, eos))
}
