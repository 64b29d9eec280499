//! LoRA (Hu et al. 2021) exactly as Hugging Face PEFT computes it: a frozen `x · W` plus a
//! trainable low-rank `dropout(x) · A · B · scaling`, with `scaling = alpha / r` (or
//! `alpha / √r` with rsLoRA), A Kaiming-uniform and B zero at the start. The adapter is two
//! small matrix products of its own, never `W + A·B` formed in the forward pass, so the backward
//! pass never builds a `d_in × d_out` gradient (Burn's own `LoraAdapter` reparameterization
//! materializes the sum on every forward, which is why it is not used here).
//!
//! The seven projections of a decoder layer are [`LoraLinear`]s whose base weight keeps Burn
//! `Linear`'s name and layout (`…q_proj.weight`, `[d_in, d_out]`), so checkpoints, the HF and
//! GGUF exports and quantized stores see the same parameter paths as before. Adapters live under
//! `…q_proj.lora.lora_a` / `lora_b`. The on-disk PEFT format is in [`crate::peft`]; the whole
//! reference is docs/lora.md.

use crate::blocks::linear;
use crate::fused;
use crate::kernels::qmatmul::QuantMatrix;
use crate::llama::Llama;
use crate::precision;
use crate::quant::GgmlType;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The projections an adapter may target, by their HF Llama names. In a Mixtral-style model the
/// expert projections are called `w1` (gate), `w2` (down) and `w3` (up) on disk; see
/// [`crate::peft`].
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The recipe's `[lora]` section; defaults are PEFT's `LoraConfig`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank of the update.
    pub r: usize,
    /// PEFT's `lora_alpha`: the update is scaled by `alpha / r` (`alpha / √r` with rsLoRA).
    #[serde(alias = "lora_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter's input, during training only.
    #[serde(alias = "lora_dropout")]
    pub dropout: f64,
    /// Which projections get an adapter, in every layer (and every expert).
    pub target_modules: Vec<String>,
    /// Rank-stabilized LoRA (Kalajdzievski 2023): scale by `alpha / √r`.
    pub use_rslora: bool,
    /// PEFT's bias mode; only `"none"` (Llama's projections have no bias).
    pub bias: String,
    /// QLoRA: keep the frozen base projections in llama.cpp's `"q8_0"` or `"q4_0"` blocks in
    /// memory and multiply with them directly ([`quantize_base`]).
    pub base_quant: Option<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            use_rslora: false,
            bias: "none".into(),
            base_quant: None,
        }
    }
}

/// The largest rank accepted: far beyond any useful adapter, and small enough that the
/// adapter's sizes cannot overflow.
pub const MAX_RANK: usize = 1 << 16;

impl LoraConfig {
    /// Checks every field; `Err((key, message))` names the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        if self.r == 0 || self.r > MAX_RANK {
            return bad("r", format!("must be between 1 and {MAX_RANK}"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha", "must be a positive number".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must be at least 0 and below 1".into());
        }
        if self.target_modules.is_empty() {
            return bad("target_modules", "names no module".into());
        }
        for t in &self.target_modules {
            if !TARGETS.contains(&t.as_str()) {
                return bad(
                    "target_modules",
                    format!("`{t}` is not one of {}", TARGETS.join(", ")),
                );
            }
        }
        if self.bias != "none" {
            return bad(
                "bias",
                format!(
                    "`{}` is not supported: the projections have no bias, only \"none\"",
                    self.bias
                ),
            );
        }
        self.base_quant_type()
            .map_err(|m| ("base_quant".to_string(), m))?;
        Ok(())
    }

    /// The block format of a QLoRA base, `None` for plain LoRA.
    pub fn base_quant_type(&self) -> Result<Option<GgmlType>, String> {
        match self.base_quant.as_deref().map(str::trim) {
            None => Ok(None),
            Some(q) if q.eq_ignore_ascii_case("q8_0") => Ok(Some(GgmlType::Q8_0)),
            Some(q) if q.eq_ignore_ascii_case("q4_0") => Ok(Some(GgmlType::Q4_0)),
            Some(q) => Err(format!(
                "`{q}` is not a base quantization Anvil keeps in memory (q8_0 or q4_0)"
            )),
        }
    }

    /// The factor on `A · B`: `alpha / r`, or `alpha / √r` with rsLoRA (PEFT's rule).
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    pub fn targets(&self, kind: &str) -> bool {
        self.target_modules.iter().any(|t| t == kind)
    }

    /// The adapters' parameters on a model of config `c`, from the config alone (for the memory
    /// check before anything is built): `r · (d_in + d_out)` per targeted projection, in every
    /// layer, expert and shared expert. Saturating, like [`LlamaConfig::parameter_count`].
    pub fn parameter_count(&self, c: &crate::LlamaConfig) -> u128 {
        let (d, r) = (c.d_model as u128, self.r as u128);
        let (q, kv) = (
            (c.n_heads * c.head_dim()) as u128,
            (c.kv_heads() * c.head_dim()) as u128,
        );
        let pair = |i: u128, o: u128| r.saturating_mul(i.saturating_add(o));
        let mut per_layer = 0u128;
        for (kind, i, o) in [
            ("q_proj", d, q),
            ("k_proj", d, kv),
            ("v_proj", d, kv),
            ("o_proj", q, d),
        ] {
            if self.targets(kind) {
                per_layer = per_layer.saturating_add(pair(i, o));
            }
        }
        let swiglu = |ff: u128| {
            [
                ("gate_proj", d, ff),
                ("up_proj", d, ff),
                ("down_proj", ff, d),
            ]
            .into_iter()
            .filter(|(k, _, _)| self.targets(k))
            .fold(0u128, |a, (_, i, o)| a.saturating_add(pair(i, o)))
        };
        per_layer = per_layer.saturating_add(match &c.moe {
            None => swiglu(c.ff_dim() as u128),
            Some(m) => {
                let e = if m.d_expert == 0 {
                    c.ff_dim()
                } else {
                    m.d_expert
                } as u128;
                let shared = if m.n_shared > 0 {
                    swiglu(e.saturating_mul(m.n_shared as u128))
                } else {
                    0
                };
                swiglu(e)
                    .saturating_mul(m.n_experts as u128)
                    .saturating_add(shared)
            }
        });
        per_layer.saturating_mul(c.n_layers as u128)
    }
}

/// The trainable low-rank pair of one projection, in Burn's `[in, out]` layout: `lora_a` is
/// PEFT's `lora_A.weight` transposed, `lora_b` its `lora_B.weight` transposed.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `[d_in, r]`.
    pub lora_a: Param<Tensor<2>>,
    /// `[r, d_out]`.
    pub lora_b: Param<Tensor<2>>,
    #[module(skip)]
    pub scaling: f64,
    #[module(skip)]
    pub dropout: f64,
}

impl LoraAdapter {
    /// PEFT's default init: A ~ Kaiming-uniform with a = √5, which for fan_in = `d_in` is
    /// U(−1/√d_in, 1/√d_in); B = 0, so the adapted model starts as the base. A is drawn from the
    /// device RNG, like every other initialization.
    pub fn new(d_in: usize, d_out: usize, cfg: &LoraConfig, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::<2>::random([d_in, cfg.r], Distribution::Uniform(-bound, bound), device);
        Self::from_tensors(a, Tensor::zeros([cfg.r, d_out], device), cfg)
    }

    /// An adapter holding `a` (`[d_in, r]`) and `b` (`[r, d_out]`).
    pub fn from_tensors(a: Tensor<2>, b: Tensor<2>, cfg: &LoraConfig) -> Self {
        Self {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            scaling: cfg.scaling(),
            dropout: cfg.dropout,
        }
    }

    pub fn rank(&self) -> usize {
        self.lora_a.dims()[1]
    }

    /// `dropout(x) · A · B · scaling`. The scaling multiplies the rank-`r` intermediate rather
    /// than the `d_out`-wide result: the same product, a fraction of the work.
    fn forward<const D: usize>(&self, x: Tensor<D>, fused_on: bool) -> Tensor<D> {
        let mm = |x: Tensor<D>, w: Tensor<2>| {
            if fused_on {
                fused::linear(x, w)
            } else {
                precision::linear(x, w)
            }
        };
        let h = mm(self.dropout(x), self.lora_a.val());
        let h = if self.scaling == 1.0 {
            h
        } else {
            h * self.scaling
        };
        mm(h, self.lora_b.val())
    }

    /// Inverted dropout, as `nn.Dropout` in training mode; a no-op off autodiff devices (that is,
    /// in inference and in validation through `Module::valid`). Masks come from the device RNG:
    /// reseed it before each step to make them a function of the step (see docs/lora.md).
    fn dropout<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.dropout == 0.0 || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.dropout;
        let mask = x.random_like(Distribution::Bernoulli(keep));
        x * mask * (1.0 / keep)
    }

    /// `A · B · scaling`, `[d_in, d_out]`, outside any autodiff graph.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_a
            .val()
            .detach()
            .matmul(self.lora_b.val().detach())
            * self.scaling
    }
}

/// A bias-free linear layer, `x · weight`, with an optional LoRA adapter. `weight` has Burn
/// `Linear`'s name and `[d_in, d_out]` layout, so every file that held a `Linear` here loads.
///
/// A frozen weight may instead be held quantized (`quant`, QLoRA and quantized checkpoints):
/// `weight` is then an empty `[0, 0]` placeholder and the product runs on the blocks.
#[derive(Module, Debug)]
pub struct LoraLinear {
    pub weight: Param<Tensor<2>>,
    pub lora: Option<LoraAdapter>,
    #[module(skip)]
    pub quant: Option<Arc<QuantMatrix>>,
}

impl LoraLinear {
    /// A layer without adapter, initialized exactly as `blocks::linear` (same RNG draws, so a
    /// seeded model is the same one it was when these were `Linear`s).
    pub fn new(d_in: usize, d_out: usize, init_std: f64, device: &Device) -> Self {
        Self {
            weight: linear(d_in, d_out, init_std, device).weight,
            lora: None,
            quant: None,
        }
    }

    /// `x · W` (through the fused kernel where there is one: Burn's matmul zeroes and then copies
    /// every output buffer), plus the adapter's update unless [`without_adapters`] is running.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let fused_on = fused::enabled(&x.device());
        let Some(adapter) = self.lora.as_ref().filter(|_| adapters_on()) else {
            return self.base(x, fused_on);
        };
        let update = adapter.forward(x.clone(), fused_on);
        self.base(x, fused_on) + update
    }

    fn base<const D: usize>(&self, x: Tensor<D>, fused_on: bool) -> Tensor<D> {
        if let Some(q) = &self.quant {
            return fused::quant_linear(x, q);
        }
        if fused_on {
            fused::linear(x, self.weight.val())
        } else {
            let w = self.weight.val();
            debug_assert_eq!(x.dims()[D - 1], w.dims()[0], "linear: input width");
            precision::linear(x, w)
        }
    }

    /// `[d_in, d_out]`.
    pub fn dims(&self) -> [usize; 2] {
        match &self.quant {
            Some(q) => {
                let [d_out, d_in] = q.shape();
                [d_in, d_out]
            }
            None => self.weight.lazy_shape().dims(),
        }
    }

    /// Keeps the weight as `ty` blocks and drops its f32 values; `false` (nothing changed) when
    /// its inputs are not whole blocks of 32, as llama.cpp's rule for quantizing a matrix.
    pub fn quantize(&mut self, ty: GgmlType) -> bool {
        if self.quant.is_some() {
            return true;
        }
        let [d_in, d_out] = self.dims();
        let w = self.weight.val();
        // A quantized checkpoint's weight arrives as Burn's block-quantized tensor.
        let w = if matches!(w.dtype(), burn::tensor::DType::QFloat(_)) {
            w.dequantize()
        } else {
            w
        };
        let device = w.device();
        let values = w.into_data().convert::<f32>();
        let Some(q) = values
            .as_slice::<f32>()
            .ok()
            .and_then(|v| QuantMatrix::quantize(v, d_in, d_out, ty))
        else {
            return false;
        };
        self.quant = Some(Arc::new(q));
        self.weight = Param::from_tensor(Tensor::zeros([0, 0], &device)).set_require_grad(false);
        true
    }

    /// Puts the f32 weight back from the blocks (for merging and exports): the dequantized
    /// values, as every reader of a quantized file gets them.
    pub fn dequantize(&mut self) {
        let Some(q) = self.quant.take() else { return };
        let [d_out, d_in] = q.shape();
        let device = self.weight.val().device();
        let data = burn::tensor::TensorData::new(q.dequantize_in_out(), [d_in, d_out]);
        self.weight = Param::from_tensor(Tensor::from_data(data, &device)).set_require_grad(false);
    }
}

thread_local! {
    /// Set while [`without_adapters`] runs on this thread.
    static ADAPTERS_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn adapters_on() -> bool {
    !ADAPTERS_OFF.with(|off| off.get())
}

/// Runs `f` with every LoRA adapter of this thread's forward passes switched off: the model
/// computes its frozen base's outputs (the GRPO/DPO reference), as PEFT's
/// `with model.disable_adapter():`, without a second copy of the model. Thread-local, so a
/// policy forward pass on another thread keeps its adapters; nests, and the previous state
/// comes back when `f` returns or panics.
pub fn without_adapters<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag in `drop`, which runs during unwinding too.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ADAPTERS_OFF.with(|off| off.set(self.0));
        }
    }
    let _restore = Restore(ADAPTERS_OFF.with(|off| off.replace(true)));
    f()
}

/// Calls `f(path, kind, layer)` for every projection of `model` in module order: `path` is the
/// Burn module path (`model.layers.0.self_attn.q_proj`, `model.layers.1.moe.experts.3.up_proj`,
/// `model.layers.1.moe.shared_experts.down_proj`), `kind` one of [`TARGETS`]. The LM head and
/// the MoE router are plain `Linear`s and never adapted.
pub fn for_each_projection(
    model: &mut Llama,
    mut f: impl FnMut(&str, &'static str, &mut LoraLinear),
) {
    for (i, layer) in model.model.layers.iter_mut().enumerate() {
        let a = &mut layer.self_attn;
        let p = format!("model.layers.{i}.self_attn");
        f(&format!("{p}.q_proj"), "q_proj", &mut a.q_proj);
        f(&format!("{p}.k_proj"), "k_proj", &mut a.k_proj);
        f(&format!("{p}.v_proj"), "v_proj", &mut a.v_proj);
        f(&format!("{p}.o_proj"), "o_proj", &mut a.o_proj);
        let mut ffn = |p: String, s: &mut crate::blocks::SwiGlu| {
            f(&format!("{p}.gate_proj"), "gate_proj", &mut s.gate_proj);
            f(&format!("{p}.up_proj"), "up_proj", &mut s.up_proj);
            f(&format!("{p}.down_proj"), "down_proj", &mut s.down_proj);
        };
        if let Some(mlp) = &mut layer.mlp {
            ffn(format!("model.layers.{i}.mlp"), mlp);
        }
        if let Some(moe) = &mut layer.moe {
            for (e, expert) in moe.experts.iter_mut().enumerate() {
                ffn(format!("model.layers.{i}.moe.experts.{e}"), expert);
            }
            if let Some(shared) = &mut moe.shared_experts {
                ffn(format!("model.layers.{i}.moe.shared_experts"), shared);
            }
        }
    }
}

/// Whether any projection of `model` carries an adapter.
pub fn has_adapters(model: &Llama) -> bool {
    let mut m = model.clone();
    let mut any = false;
    for_each_projection(&mut m, |_, _, l| any |= l.lora.is_some());
    any
}

/// Trainable values in the adapters of `model`.
pub fn adapter_parameter_count(model: &Llama) -> usize {
    let mut m = model.clone();
    let mut n = 0;
    for_each_projection(&mut m, |_, _, l| {
        if let Some(a) = &l.lora {
            n += a.lora_a.lazy_shape().num_elements() + a.lora_b.lazy_shape().num_elements();
        }
    });
    n
}

/// Whether the parameter at Burn path `path` belongs to an adapter.
pub fn is_adapter_path(path: &str) -> bool {
    path.split('.').any(|c| c == "lora")
}

/// Forces every lazily initialized parameter now, in module order.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let _ = p.val();
    }
}

/// Sets `require_grad` by path: adapters on, everything else off.
struct Freeze {
    stack: Vec<String>,
}

impl ModuleMapper for Freeze {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        p.set_require_grad(self.stack.iter().any(|c| c == "lora"))
    }
}

/// `model` with every base parameter frozen (`require_grad` off: no gradient is computed or kept
/// for it, so the optimizer never sees it) and every adapter parameter trainable. Takes effect
/// on an autodiff device; the setting survives `fork`, `valid`/`train` and checkpoint loading,
/// but [`crate::trainable`] undoes it: call this after it.
pub fn freeze_base(model: Llama) -> Llama {
    model.map(&mut Freeze { stack: Vec::new() })
}

/// `model` with fresh adapters (PEFT's init) on every projection `cfg` targets, in every layer
/// and every expert, shared experts included, and its base frozen ([`freeze_base`]). Adapters it
/// had are replaced. The base is materialized first, so a seeded random base is the same with or
/// without adapters. `cfg` must have passed [`LoraConfig::validate`].
pub fn apply_lora(model: Llama, cfg: &LoraConfig) -> Llama {
    if let Err((k, m)) = cfg.validate() {
        panic!("apply_lora with an invalid config (`{k}`: {m}); validate it first");
    }
    model.visit(&mut Materialize);
    let device = model.device();
    let mut model = model;
    for_each_projection(&mut model, |_, kind, l| {
        l.lora = cfg.targets(kind).then(|| {
            let [d_in, d_out] = l.dims();
            LoraAdapter::new(d_in, d_out, cfg, &device)
        });
    });
    freeze_base(model)
}

/// QLoRA's base: every projection of `model` (adapted or not, in every layer and expert) kept
/// as `ty` blocks in memory, its f32 values dropped; projections whose inputs are not whole
/// blocks stay f32. Returns the model and how many projections were quantized. The LM head,
/// embeddings, norms and routers stay f32, as in QLoRA (Dettmers et al. 2023).
pub fn quantize_base(mut model: Llama, ty: GgmlType) -> (Llama, usize) {
    let mut n = 0;
    for_each_projection(&mut model, |_, _, l| n += l.quantize(ty) as usize);
    (model, n)
}

/// `model` with every quantized projection back in f32 (dequantized values).
pub fn dequantize_base(mut model: Llama) -> Llama {
    for_each_projection(&mut model, |_, _, l| l.dequantize());
    model
}

/// `model` with f32 weights everywhere: itself, or a dequantized copy when projections are
/// held quantized. Every writer of full weights (checkpoint, HF, GGUF, quantized store) and the
/// base fingerprint read through this, so a quantized model is never written as placeholders.
pub fn f32_base(model: &Llama) -> std::borrow::Cow<'_, Llama> {
    if is_quantized(model) {
        std::borrow::Cow::Owned(dequantize_base(model.clone()))
    } else {
        std::borrow::Cow::Borrowed(model)
    }
}

/// Whether any projection of `model` is held quantized.
pub fn is_quantized(model: &Llama) -> bool {
    let mut m = model.clone();
    let mut any = false;
    for_each_projection(&mut m, |_, _, l| any |= l.quant.is_some());
    any
}

/// `model` with each adapter folded into its weight, `W ← W + A·B·scaling`, and removed: a plain
/// model again, for export. Weights keep their `require_grad` setting; a quantized base is
/// dequantized first (the merged weight is f32).
pub fn merge(mut model: Llama) -> Llama {
    for_each_projection(&mut model, |_, _, l| {
        l.dequantize();
        if let Some(adapter) = l.lora.take() {
            let delta = adapter.delta();
            l.weight = l.weight.clone().map(|w| {
                let require_grad = w.is_require_grad();
                (w.detach() + delta).detach().set_require_grad(require_grad)
            });
        }
    });
    model
}

/// `model` without its adapters (the base alone, unchanged).
pub fn remove_adapters(mut model: Llama) -> Llama {
    for_each_projection(&mut model, |_, _, l| l.lora = None);
    model
}
