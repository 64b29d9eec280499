//! What the LoRA test binaries share: small configs, a seeded-RNG lock, logits and helpers.
#![allow(dead_code)]

use anvil_models::lora::{self, LoraConfig};
use anvil_models::{Llama, LlamaConfig, MoeConfig, TokenBatch};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Distribution, Tensor};

pub fn dense() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 61,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: 32,
        ..Default::default()
    }
}

pub fn mixtral() -> LlamaConfig {
    LlamaConfig {
        moe: Some(MoeConfig {
            n_experts: 3,
            top_k: 2,
            ..Default::default()
        }),
        d_ff: 48,
        ..dense()
    }
}

pub fn shared_experts() -> LlamaConfig {
    LlamaConfig {
        moe: Some(MoeConfig {
            n_experts: 3,
            top_k: 1,
            n_shared: 1,
            ..Default::default()
        }),
        d_ff: 48,
        tie_embeddings: true,
        ..dense()
    }
}

pub fn all_targets(r: usize) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 16.0,
        target_modules: lora::TARGETS.map(String::from).to_vec(),
        ..Default::default()
    }
}

/// The device RNG is one per process and tests run on threads: every test that draws holds this.
pub static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

pub const IDS: [u32; 12] = [3, 17, 5, 60, 0, 9, 41, 8, 8, 2, 33, 1];

pub fn logits(m: &Llama) -> Vec<f32> {
    m.logits(&IDS, 2, 0, None)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

pub fn batch() -> TokenBatch {
    TokenBatch {
        input_ids: IDS.to_vec(),
        segment_ids: None,
        loss_mask: None,
        batch: 2,
        seq_len: 6,
        tree: None,
        position_targets: None,
    }
}

pub fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every adapter's B drawn from N(0, 0.05²), so the adapters change the function (by about as
/// much as the base weights, N(0, 0.02²), contribute).
pub fn random_b(mut model: Llama) -> Llama {
    let device = model.device();
    lora::for_each_projection(&mut model, |_, _, l| {
        if let Some(a) = &mut l.lora {
            let dims = a.lora_b.dims();
            let b = Tensor::<2>::random(dims, Distribution::Normal(0.0, 0.05), &device);
            a.lora_b = Param::from_tensor(b);
        }
    });
    model
}

pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Every float parameter's path and whether it requires a gradient.
pub fn grad_flags(model: &Llama) -> Vec<(String, bool)> {
    struct V(Vec<String>, Vec<(String, bool)>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.push((self.0.join("."), p.val().is_require_grad()));
        }
    }
    let mut v = V(Vec::new(), Vec::new());
    model.visit(&mut v);
    v.1
}
