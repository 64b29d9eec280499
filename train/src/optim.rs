//! AdamW with decoupled weight decay, global-norm gradient clipping, gradient accumulation and the
//! warmup + cosine learning-rate schedule. Written here rather than taken from burn-optim because
//! Burn clips per tensor only, decays every parameter alike, and its state is not addressable by
//! parameter name — which full-state resume and HF-comparable runs need.

use crate::recipe::{OptimConfig, ScheduleConfig};
use anvil_models::fused;
use anvil_models::kernels::AdamWStep;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use std::collections::BTreeMap;

/// Learning rate at optimizer step `step` (0-based): linear warmup to `lr`, then cosine decay to
/// `min_lr_ratio · lr` at `max_steps`.
pub fn lr_at(step: usize, lr: f64, s: &ScheduleConfig, max_steps: usize) -> f64 {
    if step < s.warmup_steps {
        return lr * (step + 1) as f64 / s.warmup_steps as f64;
    }
    let span = max_steps.saturating_sub(s.warmup_steps).max(1) as f64;
    let progress = ((step - s.warmup_steps) as f64 / span).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (s.min_lr_ratio + (1.0 - s.min_lr_ratio) * cosine)
}

/// Every float parameter's dotted path, in module order — the names checkpoints and HF use.
pub struct Paths {
    stack: Vec<String>,
}

impl Paths {
    pub(crate) fn new() -> Self {
        Self { stack: Vec::new() }
    }
    pub(crate) fn enter(&mut self, name: &str) {
        self.stack.push(name.to_string());
    }
    pub(crate) fn exit(&mut self) {
        self.stack.pop();
    }
    pub(crate) fn path(&self) -> String {
        self.stack.join(".")
    }
}

/// Gradients summed over the micro-batches of one step, flattened, by parameter path.
#[derive(Default)]
pub struct GradAccumulator {
    pub(crate) grads: BTreeMap<String, Tensor<1>>,
}

struct Collect<'a> {
    paths: Paths,
    grads: &'a Gradients,
    into: &'a mut BTreeMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let n = g.shape().num_elements();
            let g = g.reshape([n]);
            let path = self.paths.path();
            let sum = match self.into.remove(&path) {
                Some(acc) => acc + g,
                None => g,
            };
            self.into.insert(path, sum);
        }
    }
}

impl GradAccumulator {
    /// Adds this backward pass's gradients of `model`'s parameters.
    pub fn add<M: Module>(&mut self, model: &M, grads: &Gradients) {
        model.visit(&mut Collect {
            paths: Paths::new(),
            grads,
            into: &mut self.grads,
        });
    }

    /// The L2 norm over every gradient together.
    pub fn global_norm(&self) -> f64 {
        self.grads
            .values()
            .map(|g| g.clone().square().sum().into_scalar::<f32>() as f64)
            .sum::<f64>()
            .sqrt()
    }

    /// Scales all gradients so their global norm is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`, capped at 1). Returns the norm
    /// before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.global_norm();
        if max_norm > 0.0 {
            let coef = (max_norm / (norm + 1e-6)).min(1.0);
            if coef < 1.0 {
                self.scale(coef);
            }
        }
        norm
    }

    /// Multiplies every gradient by `factor` (unscaling a scaled loss's gradients).
    pub fn scale(&mut self, factor: f64) {
        for g in self.grads.values_mut() {
            *g = g.clone() * factor;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

/// Whether the parameter at `path` (with `ndims` dimensions) takes weight decay: matrices do,
/// unless a `no_decay` pattern names them; vectors (norms, biases) never do.
pub(crate) fn decays(c: &OptimConfig, path: &str, ndims: usize) -> bool {
    ndims > 1 && !c.no_decay.iter().any(|s| path.contains(s.as_str()))
}

/// The fused kernel's constants for optimizer step `t` (1-based) at learning rate `lr` — the one
/// place they are computed, for the whole-parameter update here and ZeRO's shard updates.
pub(crate) fn adamw_step(c: &OptimConfig, t: u64, lr: f64, decays: bool) -> AdamWStep {
    let t = t as i32;
    let bc1 = 1.0 - c.beta1.powi(t);
    let bc2 = 1.0 - c.beta2.powi(t);
    let decay = (decays && c.weight_decay > 0.0).then_some(1.0 - lr * c.weight_decay);
    AdamWStep {
        decay: decay.map(|d| d as f32),
        beta1: c.beta1 as f32,
        one_minus_beta1: (1.0 - c.beta1) as f32,
        beta2: c.beta2 as f32,
        one_minus_beta2: (1.0 - c.beta2) as f32,
        sqrt_bias_correction2: bc2.sqrt() as f32,
        eps: c.eps as f32,
        step_size: (lr / bc1) as f32,
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Tensor<1>,
    pub v: Tensor<1>,
}

/// AdamW (Loshchilov & Hutter): `p ← p·(1 − lr·wd) − lr · m̂ / (√v̂ + eps)`, exactly PyTorch's
/// update order.
pub struct AdamW {
    pub config: OptimConfig,
    /// Optimizer steps taken so far.
    pub step: u64,
    pub state: BTreeMap<String, Moments>,
}

struct Update<'a> {
    paths: Paths,
    opt: &'a mut AdamW,
    grads: &'a mut BTreeMap<String, Tensor<1>>,
    lr: f64,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.paths.path();
        let Some(g) = self.grads.remove(&path) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let p = tensor.inner();
        let shape = p.shape();
        let n = shape.num_elements();
        let c = &self.opt.config;
        let decays = decays(c, &path, D);
        let p1 = p.reshape([n]);
        let decay = (decays && c.weight_decay > 0.0).then(|| 1.0 - self.lr * c.weight_decay);
        let moments = self.opt.state.remove(&path).unwrap_or_else(|| Moments {
            m: Tensor::zeros([n], &g.device()),
            v: Tensor::zeros([n], &g.device()),
        });
        let t = self.opt.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let (p1, m, v) = if fused::enabled(&p1.device()) {
            // One pass instead of a dozen tensor ops; the same f32 arithmetic, the same bits.
            let step = adamw_step(c, self.opt.step, self.lr, decays);
            fused::adamw(p1, g, moments.m, moments.v, step)
        } else {
            let p1 = match decay {
                Some(d) => p1 * d,
                None => p1,
            };
            let m = moments.m * c.beta1 + g.clone() * (1.0 - c.beta1);
            let v = moments.v * c.beta2 + g.square() * (1.0 - c.beta2);
            let denom = v.clone().sqrt() / bc2.sqrt() + c.eps;
            (p1 - (m.clone() / denom) * (self.lr / bc1), m, v)
        };
        self.opt.state.insert(path, Moments { m, v });
        let mut updated = Tensor::from_inner(p1.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl AdamW {
    pub fn new(config: OptimConfig) -> Self {
        Self {
            config,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// One optimizer step with learning rate `lr`, consuming the accumulated gradients.
    pub fn step<M: Module>(&mut self, model: M, lr: f64, grads: &mut GradAccumulator) -> M {
        self.step += 1;
        let mut grads = std::mem::take(&mut grads.grads);
        model.map(&mut Update {
            paths: Paths::new(),
            opt: self,
            grads: &mut grads,
            lr,
        })
    }

    /// The moments as named host buffers (`<path>.m`, `<path>.v`), for checkpoints.
    pub fn export(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::with_capacity(self.state.len() * 2);
        for (path, mo) in &self.state {
            for (suffix, t) in [("m", &mo.m), ("v", &mo.v)] {
                let data = t.to_data().try_into_vec::<f32>().expect("f32 moments");
                out.push((format!("{path}.{suffix}"), data));
            }
        }
        out
    }

    /// Restores moments written by [`AdamW::export`].
    pub fn import(
        &mut self,
        step: u64,
        tensors: BTreeMap<String, Vec<f32>>,
        device: &Device,
    ) -> Result<(), String> {
        self.step = step;
        self.state.clear();
        let mut paths: Vec<&str> = tensors
            .keys()
            .filter_map(|k| k.strip_suffix(".m"))
            .collect();
        paths.dedup();
        for path in paths {
            let get = |s: &str| {
                tensors
                    .get(&format!("{path}.{s}"))
                    .ok_or_else(|| format!("optimizer state for `{path}` lacks `{s}`"))
            };
            let (m, v) = (get("m")?, get("v")?);
            let t = |x: &Vec<f32>| Tensor::from_data(TensorData::new(x.clone(), [x.len()]), device);
            self.state
                .insert(path.to_string(), Moments { m: t(m), v: t(v) });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anvil_models::{LlamaConfig, TokenBatch};

    /// Parameters and moments after three AdamW steps on a small model, as raw bits.
    fn three_steps(fused_on: bool) -> Vec<Vec<u32>> {
        let device = Device::flex().autodiff();
        device.seed(11);
        let config = LlamaConfig {
            vocab_size: 50,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            ..Default::default()
        };
        let mut model = config.init(&device);
        let mut opt = AdamW::new(OptimConfig {
            lr: 1e-2,
            ..Default::default()
        });
        let batch = TokenBatch::rows((0..40).map(|i| (i * 7 % 50) as u32).collect(), 2, 20);
        for _ in 0..3 {
            let mut grads = GradAccumulator::default();
            grads.add(&model, &model.loss(&batch).nll_sum.backward());
            grads.clip_global_norm(1.0);
            // Only the update switches: the gradients come from the same kernels both times.
            fused::set_enabled(fused_on);
            model = opt.step(model, 1e-2, &mut grads);
            fused::set_enabled(true);
        }
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let mut out: Vec<Vec<u32>> = opt.export().into_iter().map(|(_, v)| bits(v)).collect();
        struct Values(Vec<Vec<f32>>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0
                    .push(p.val().into_data().try_into_vec::<f32>().unwrap());
            }
        }
        let mut values = Values(Vec::new());
        model.visit(&mut values);
        out.extend(values.0.into_iter().map(bits));
        out
    }

    /// The one-pass AdamW kernel does the composed ops' f32 arithmetic: same bits, decay and all.
    #[test]
    fn fused_adamw_is_bit_identical_to_the_composed_update() {
        let fused_bits = three_steps(true);
        let composed_bits = three_steps(false);
        assert_eq!(fused_bits.len(), composed_bits.len());
        assert!(fused_bits == composed_bits, "fused AdamW changed the bits");
    }
}
