//! Model definitions in Burn, backend-free (the backend is chosen at run time through `Device`):
//! the Llama-style dense decoder and its mixture-of-experts variant, with weights named like
//! Hugging Face's so that import and export are a name table.
//!
//! New architectures (the tree transformer, the diffusion denoiser) are new files that reuse
//! [`blocks`], [`attention`] and [`loss`] and implement [`CausalLm`].

pub mod arch;
pub mod attention;
pub mod blocks;
pub mod device;
pub mod diffusion;
pub mod fused;
pub mod generation;
pub mod gguf;
pub mod hf;
pub mod kernels;
pub mod llama;
pub mod lora;
pub mod loss;
pub mod memory;
pub mod moe;
pub mod peft;
pub mod precision;
pub mod quant;
pub mod store;
pub mod store_quant;
pub mod tree;

pub use arch::Arch;
pub use attention::{AttentionPattern, KvCache};
pub use diffusion::{DiffusionConfig, NoiseSchedule};
pub use llama::{Llama, LlamaConfig};
pub use lora::{LoraConfig, LoraLinear};
pub use loss::{LmOutput, TokenBatch, TokenLogprobs};
pub use moe::MoeConfig;
pub use precision::Precision;
pub use tree::{TreeConfig, TreePositions};

/// What trainers need from an architecture: its tag, build from config, the loss on a batch of
/// packed rows, and per-sequence and per-token log-probabilities (DPO and GRPO). Saving and
/// loading go through [`store`] with the tag in `model.json` ([`arch`]).
pub trait CausalLm: burn::module::Module + Sized {
    type Config: Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned;
    const ARCH: Arch;

    fn init(config: &Self::Config, device: &burn::tensor::Device) -> Self;
    fn config(&self) -> &Self::Config;
    /// The tag `model.json` gets (an implementation may serve several, by its config).
    fn arch(&self) -> Arch {
        Self::ARCH
    }
    /// The summed negative log-likelihood of the batch's targets (and auxiliary losses).
    fn loss(&self, batch: &TokenBatch) -> LmOutput;
    /// Per row, the summed log-probability of its targets, shape `[batch]`, differentiable.
    fn sequence_logprobs(&self, batch: &TokenBatch) -> burn::tensor::Tensor<1>;
    /// Per position, the log-probability of its target under `softmax(logits / temperature)`,
    /// `[batch, seq]`, differentiable, and with `entropy` that distribution's entropy (see
    /// [`TokenLogprobs`]).
    fn token_logprobs(&self, batch: &TokenBatch, temperature: f32, entropy: bool) -> TokenLogprobs;
}

impl CausalLm for Llama {
    type Config = LlamaConfig;
    const ARCH: Arch = Arch::Llama;

    fn init(config: &LlamaConfig, device: &burn::tensor::Device) -> Self {
        config.init(device)
    }
    fn config(&self) -> &LlamaConfig {
        &self.config
    }
    fn arch(&self) -> Arch {
        self.config.arch()
    }
    fn loss(&self, batch: &TokenBatch) -> LmOutput {
        Llama::loss(self, batch)
    }
    fn sequence_logprobs(&self, batch: &TokenBatch) -> burn::tensor::Tensor<1> {
        Llama::sequence_logprobs(self, batch)
    }
    fn token_logprobs(&self, batch: &TokenBatch, temperature: f32, entropy: bool) -> TokenLogprobs {
        Llama::token_logprobs(self, batch, temperature, entropy)
    }
}

/// Why a tokenizer of `tokenizer` tokens cannot be this model's (`model` = its `vocab_size`), or
/// `None`. Models often pad their vocabulary past the tokenizer's (to a multiple of 64, or with
/// room for added tokens), so a small surplus is fine; a model several times larger than its
/// tokenizer was trained with another one, and would decode ids this tokenizer cannot print.
pub fn vocab_mismatch(tokenizer: usize, model: usize) -> Option<String> {
    let padding = (model / 8).max(1024);
    if tokenizer > model {
        Some(format!(
            "the tokenizer has {tokenizer} tokens but the model only {model}"
        ))
    } else if model - tokenizer > padding {
        Some(format!(
            "the tokenizer has {tokenizer} tokens but the model {model}: not the tokenizer this \
             model was trained with (at most {padding} unused ids are accepted as padding)"
        ))
    } else {
        None
    }
}

/// `model` with every parameter drawn now, in parameter order, on the device it was built on.
/// Burn initializes parameters lazily — on first use, on whatever device the parameter has
/// moved to by then — so a model built on the CPU and moved to a GPU would otherwise draw its
/// weights from the GPU's generator, and in the order the forward pass first touches them.
pub fn materialized<M: burn::module::Module>(model: M) -> M {
    struct Draw;
    impl burn::module::ModuleMapper for Draw {
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<burn::tensor::Tensor<D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<D>> {
            p.map(|t| t)
        }
    }
    model.map(&mut Draw)
}

/// `model` with every float parameter tracked by autodiff (on an autodiff device): a model
/// loaded for inference and moved there with `fork` would otherwise train nothing.
pub fn trainable<M: burn::module::Module>(model: M) -> M {
    struct RequireGrad;
    impl burn::module::ModuleMapper for RequireGrad {
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<burn::tensor::Tensor<D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<D>> {
            // A tensor from a device without autodiff has no graph to join until wrapped.
            p.map(|t| t.autodiff()).set_require_grad(true)
        }
    }
    model.map(&mut RequireGrad)
}
