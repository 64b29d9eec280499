//! Mixture of experts: the feed-forward replaced by `n_experts` SwiGLU experts with top-k softmax
//! routing (renormalized over the chosen k, as Mixtral), optional always-on shared experts
//! (DeepSeekMoE), the Switch load-balancing loss and the router z-loss. Dispatch is dropless
//! gather/scatter: each expert runs only on the tokens routed to it.

use crate::blocks::{SwiGlu, linear};
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The recipe's `[model.moe]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Shared experts every token goes through, besides the routed ones.
    pub n_shared: usize,
    /// Hidden width of each expert; 0 means the dense model's `d_ff`.
    pub d_expert: usize,
    /// α of the Switch load-balancing loss `α · E · Σ fᵢ · Pᵢ`, summed over MoE layers.
    pub aux_loss_coef: f64,
    /// Coefficient of the router z-loss `mean(logsumexp(logits)²)` (ST-MoE).
    pub z_loss_coef: f64,
}

impl Default for MoeConfig {
    fn default() -> Self {
        Self {
            n_experts: 8,
            top_k: 2,
            n_shared: 0,
            d_expert: 0,
            aux_loss_coef: 1e-2,
            z_loss_coef: 1e-3,
        }
    }
}

impl MoeConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.n_experts < 2 {
            return Err((
                "n_experts".into(),
                "a mixture needs at least 2 experts".into(),
            ));
        }
        if self.top_k == 0 || self.top_k > self.n_experts {
            return Err((
                "top_k".into(),
                format!("must be between 1 and n_experts = {}", self.n_experts),
            ));
        }
        for (k, v) in [
            ("aux_loss_coef", self.aux_loss_coef),
            ("z_loss_coef", self.z_loss_coef),
        ] {
            if !(v >= 0.0) {
                return Err((k.into(), "must be zero or positive".into()));
            }
        }
        Ok(())
    }

    pub fn init(&self, d_model: usize, d_ff: usize, init_std: f64, device: &Device) -> MoeLayer {
        let d_expert = if self.d_expert == 0 {
            d_ff
        } else {
            self.d_expert
        };
        MoeLayer {
            gate: linear(d_model, self.n_experts, init_std, device),
            experts: (0..self.n_experts)
                .map(|_| SwiGlu::new(d_model, d_expert, init_std, device))
                .collect(),
            shared_experts: (self.n_shared > 0)
                .then(|| SwiGlu::new(d_model, d_expert * self.n_shared, init_std, device)),
            top_k: self.top_k,
        }
    }
}

/// What one MoE layer reports for a batch.
#[derive(Debug, Clone)]
pub struct MoeStats {
    /// Fraction of the routed (token, slot) assignments each expert received (fᵢ).
    pub load: Vec<f32>,
    /// `E · Σ fᵢ · Pᵢ`, shape `[1]`, differentiable through Pᵢ.
    pub balance: Tensor<1>,
    /// `mean(logsumexp(router logits)²)`, shape `[1]`.
    pub z: Tensor<1>,
}

impl MoeStats {
    /// The auxiliary loss of a forward pass: every MoE layer's balance and z terms with their
    /// coefficients, summed over layers.
    pub fn aux_loss(stats: &[MoeStats], c: &MoeConfig) -> Option<Tensor<1>> {
        stats
            .iter()
            .map(|s| s.balance.clone() * c.aux_loss_coef + s.z.clone() * c.z_loss_coef)
            .reduce(|a, b| a + b)
    }
}

#[derive(Module, Debug)]
pub struct MoeLayer {
    /// The router, `[d_model, n_experts]`.
    pub gate: Linear,
    pub experts: Vec<SwiGlu>,
    pub shared_experts: Option<SwiGlu>,
    #[module(skip)]
    pub top_k: usize,
}

/// Router decisions for `n` tokens.
struct Routing {
    probs: Tensor<2>,
    logits: Tensor<2>,
    /// Renormalized weights of the chosen experts, `[n, k]`.
    weights: Tensor<2>,
    /// Chosen experts, row-major `[n · k]`.
    chosen: Vec<usize>,
}

impl MoeLayer {
    fn route(&self, x: Tensor<2>) -> Routing {
        // The model computes in f32 throughout, so the router does too (it must never be bf16:
        // routing decisions are brittle to rounding).
        let logits = self.gate.forward(x);
        let probs = softmax(logits.clone(), 1);
        let (top, idx) = probs.clone().topk_with_indices(self.top_k, 1);
        let weights = top.clone() / top.sum_dim(1);
        let chosen = idx
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("expert indices are integers")
            .into_iter()
            .map(|i| i as usize)
            .collect();
        Routing {
            probs,
            logits,
            weights,
            chosen,
        }
    }

    fn stats(&self, r: &Routing, n: usize) -> MoeStats {
        let e = self.experts.len();
        let mut counts = vec![0usize; e];
        for &c in &r.chosen {
            counts[c] += 1;
        }
        let total = (n * self.top_k) as f32;
        let load: Vec<f32> = counts.iter().map(|&c| c as f32 / total).collect();
        let device = r.probs.device();
        let f = Tensor::<1>::from_data(TensorData::new(load.clone(), [e]), &device);
        let p = r.probs.clone().mean_dim(0).reshape([e]);
        let balance = (f * p).sum() * e as f64;
        // logsumexp with the max taken out for stability.
        let m = r.logits.clone().max_dim(1).detach();
        let lse = (r.logits.clone() - m.clone()).exp().sum_dim(1).log() + m;
        let z = lse.square().mean();
        MoeStats { load, balance, z }
    }

    /// `x`: `[batch, seq, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, MoeStats) {
        let [b, t, d] = x.dims();
        let n = b * t;
        let xf = x.reshape([n, d]);
        let r = self.route(xf.clone());
        let device = xf.device();
        let k = self.top_k;
        let flat_weights = r.weights.clone().reshape([n * k]);
        let mut out = Tensor::<2>::zeros([n, d], &device);
        for (e, expert) in self.experts.iter().enumerate() {
            // (token, slot) pairs routed to this expert, in token order.
            let slots: Vec<usize> = (0..n * k).filter(|&s| r.chosen[s] == e).collect();
            if slots.is_empty() {
                continue;
            }
            let tokens: Vec<i64> = slots.iter().map(|&s| (s / k) as i64).collect();
            let slots: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
            let m = tokens.len();
            let tok = Tensor::<1, Int>::from_data(TensorData::new(tokens, [m]), &device);
            let slot = Tensor::<1, Int>::from_data(TensorData::new(slots, [m]), &device);
            let y = expert.forward(xf.clone().select(0, tok.clone()));
            let w = flat_weights.clone().select(0, slot).reshape([m, 1]);
            out = out.select_assign(0, tok, y * w, IndexingUpdateOp::Add);
        }
        if let Some(shared) = &self.shared_experts {
            out = out + shared.forward(xf);
        }
        let stats = self.stats(&r, n);
        (out.reshape([b, t, d]), stats)
    }

    /// The same function computed the slow, obvious way: every expert on every token, weighted by
    /// a gate that is zero for the experts not chosen. Tests check the dispatch against it.
    pub fn forward_dense_reference(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let n = b * t;
        let e = self.experts.len();
        let xf = x.reshape([n, d]);
        let r = self.route(xf.clone());
        let weights = r
            .weights
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 weights");
        let mut gates = vec![0f32; n * e];
        for s in 0..n * self.top_k {
            gates[(s / self.top_k) * e + r.chosen[s]] += weights[s];
        }
        let gates = Tensor::<2>::from_data(TensorData::new(gates, [n, e]), &xf.device());
        let mut out = Tensor::<2>::zeros([n, d], &xf.device());
        for (i, expert) in self.experts.iter().enumerate() {
            out = out + expert.forward(xf.clone()) * gates.clone().narrow(1, i, 1);
        }
        if let Some(shared) = &self.shared_experts {
            out = out + shared.forward(xf);
        }
        out.reshape([b, t, d])
    }
}
