//! Model definitions in Burn, backend-free (the backend is chosen at run time through `Device`):
//! the Llama-style dense decoder and its mixture-of-experts variant, with weights named like
//! Hugging Face's so that import and export are a name table.
//!
//! New architectures (the tree transformer, the diffusion denoiser) are new files that reuse
//! [`blocks`], [`attention`] and [`loss`] and implement [`CausalLm`].

pub mod attention;
pub mod blocks;
pub mod fused;
pub mod gguf;
pub mod hf;
pub mod kernels;
pub mod llama;
pub mod loss;
pub mod moe;
pub mod quant;
pub mod store;
pub mod store_quant;

pub use attention::{AttentionPattern, KvCache};
pub use llama::{Llama, LlamaConfig};
pub use loss::{LmOutput, TokenBatch};
pub use moe::MoeConfig;

/// What a trainer needs from a model: a loss on a batch of packed token rows.
pub trait CausalLm: burn::module::Module {
    fn loss(&self, batch: &TokenBatch) -> LmOutput;
}

impl CausalLm for Llama {
    fn loss(&self, batch: &TokenBatch) -> LmOutput {
        Llama::loss(self, batch)
    }
}
