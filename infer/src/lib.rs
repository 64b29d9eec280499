//! Compact inference for Anvil's models: loading a checkpoint with its tokenizer, KV-cached
//! decoding (greedy, temperature, top-k, top-p, repetition penalty, stop sequences, seeds,
//! several samples of a prompt at once), token healing, fill-in-the-middle prompts, and beam
//! search that can keep to syntactically valid code; tree models are fed each token's tree
//! position from an incremental parse of the text so far.

pub mod beam;
pub mod diffusion;
pub mod generate;
pub mod healing;
pub mod load;
pub mod sampling;
pub mod syntax;
pub mod testing;
pub mod tree;

pub use beam::{BeamParams, Hypothesis};
pub use generate::{
    Completion, Event, FinishReason, GenerateParams, Generation, Generator, Request, Timing,
};
pub use healing::Healing;
pub use load::{Adapter, Loaded, Weights, load, load_adapted, load_model, load_weights};
pub use sampling::SamplingParams;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{path}: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("{0}")]
    Param(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl InferError {
    pub fn load(path: &Path, msg: impl std::fmt::Display) -> Self {
        Self::Load {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        }
    }
}

impl Generator {
    /// Loads a checkpoint, run folder or HF folder with its tokenizer on the CPU (a
    /// full model: [`Generator::load_adapted`] takes LoRA adapters).
    pub fn load(path: &Path, tokenizer: Option<&Path>) -> Result<Self, InferError> {
        Self::load_on(path, None, tokenizer, &anvil_models::device::cpu())
    }

    /// [`Generator::load_adapted`] on `device` (`anvil_models::device::select`).
    pub fn load_on(
        path: &Path,
        adapter: Option<&Path>,
        tokenizer: Option<&Path>,
        device: &burn::tensor::Device,
    ) -> Result<Self, InferError> {
        Ok(load::load_adapted(path, adapter, tokenizer, device)?.into())
    }

    /// [`Generator::load`] with a LoRA adapter (a PEFT-format folder or a LoRA run) applied to
    /// the checkpoint, unmerged; see [`load::load_adapted`].
    pub fn load_adapted(
        path: &Path,
        adapter: Option<&Path>,
        tokenizer: Option<&Path>,
    ) -> Result<Self, InferError> {
        Self::load_on(path, adapter, tokenizer, &anvil_models::device::cpu())
    }
}
