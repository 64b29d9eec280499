//! Finding and loading a model with its tokenizer: an Anvil checkpoint folder (`model.json` +
//! `model.bpk`, quantized or not), a run folder (its newest checkpoint), or a Hugging Face folder
//! (`config.json` + `model.safetensors`), each with a `tokenizer.json` beside it or in the run.

use crate::InferError;
use anvil_models::{Llama, hf, store};
use burn::tensor::Device;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A model ready for decoding.
pub struct Loaded {
    pub model: Llama,
    /// The folder the weights came from.
    pub checkpoint: PathBuf,
    pub tokenizer: Tokenizer,
    pub tokenizer_path: PathBuf,
    /// Token ids that end a sequence.
    pub eos: Vec<u32>,
}

/// What kind of folder holds the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Anvil,
    HuggingFace,
}

/// The folder holding the weights `path` names: itself, or a run folder's newest checkpoint.
pub fn resolve(path: &Path) -> Result<(PathBuf, Layout), InferError> {
    let layout_of = |p: &Path| {
        if p.join(store::WEIGHTS_FILE).is_file() {
            Some(Layout::Anvil)
        } else if p.join("config.json").is_file() && p.join("model.safetensors").is_file() {
            Some(Layout::HuggingFace)
        } else {
            None
        }
    };
    if let Some(l) = layout_of(path) {
        return Ok((path.to_path_buf(), l));
    }
    if !path.is_dir() {
        return Err(InferError::load(path, "no such folder"));
    }
    // A run folder: its newest checkpoint that holds weights.
    let newest = store::step_dirs(&path.join(store::CHECKPOINTS_DIR))
        .into_iter()
        .rev()
        .find_map(|(_, p)| layout_of(&p).map(|l| (p, l)));
    match newest {
        Some((p, l)) => Ok((p, l)),
        None => Err(InferError::load(
            path,
            "neither a checkpoint (model.bpk or config.json + model.safetensors) nor a run \
             folder with checkpoints",
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

/// Loads the weights only (no tokenizer needed), on `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<(Llama, PathBuf), InferError> {
    let (ckpt, layout) = resolve(path)?;
    let model = match layout {
        Layout::Anvil => store::load(&ckpt, device).map_err(|e| InferError::load(&ckpt, e))?,
        Layout::HuggingFace => hf::import(&ckpt, device).map_err(|e| InferError::load(&ckpt, e))?,
    };
    Ok((model, ckpt))
}

/// Loads weights and tokenizer. `tokenizer` overrides where the tokenizer is looked for.
pub fn load(path: &Path, tokenizer: Option<&Path>, device: &Device) -> Result<Loaded, InferError> {
    let (model, ckpt) = load_model(path, device)?;
    let tokenizer_path = match tokenizer {
        Some(t) => t.to_path_buf(),
        None => find_tokenizer(&ckpt).ok_or_else(|| {
            InferError::load(
                &ckpt,
                "no tokenizer.json beside the weights or in the run folder (pass --tokenizer)",
            )
        })?,
    };
    let (tokenizer, eos) = load_tokenizer(&tokenizer_path)?;
    let vocab = tokenizer.get_vocab_size(true);
    if let Some(why) = anvil_models::vocab_mismatch(vocab, model.config.vocab_size) {
        return Err(InferError::load(&tokenizer_path, why));
    }
    Ok(Loaded {
        model,
        checkpoint: ckpt,
        tokenizer,
        tokenizer_path,
        eos,
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
