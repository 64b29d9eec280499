//! Building blocks shared by every decoder: RMSNorm, the SwiGLU feed-forward, rotary position
//! embeddings with their context-extension scalings, and weight initialization.

use crate::fused;
use crate::lora::LoraLinear;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// A linear layer without bias, initialized like HF Llama (normal, std `init_std`).
pub fn linear(d_in: usize, d_out: usize, init_std: f64, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: init_std,
        })
        .init(device)
}

/// Root-mean-square layer norm: `x / sqrt(mean(x²) + eps) · weight`, as Llama defines it (no
/// mean subtraction, no bias). Named `weight` like HF's so the export table stays trivial.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    #[module(skip)]
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(d: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d], device)),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if fused::enabled(&x.device()) {
            return fused::rms_norm(x, self.weight.val(), self.eps);
        }
        self.forward_composed(x)
    }

    /// The same in Burn tensor ops, for devices without the fused kernels.
    fn forward_composed<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        let w = self.weight.val().unsqueeze::<D>();
        x / rms * w
    }
}

/// The SwiGLU feed-forward of Llama: `down(silu(gate(x)) · up(x))`. SiLU needs one `exp`, not
/// GELU's `erf`, which is part of why it is cheaper on CPU. Each projection may carry a LoRA
/// adapter ([`crate::lora`]).
#[derive(Module, Debug)]
pub struct SwiGlu {
    pub gate_proj: LoraLinear,
    pub up_proj: LoraLinear,
    pub down_proj: LoraLinear,
}

impl SwiGlu {
    pub fn new(d_model: usize, d_ff: usize, init_std: f64, device: &Device) -> Self {
        Self {
            gate_proj: LoraLinear::new(d_model, d_ff, init_std, device),
            up_proj: LoraLinear::new(d_model, d_ff, init_std, device),
            down_proj: LoraLinear::new(d_ff, d_model, init_std, device),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (gate, up) = (self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        let h = if fused::enabled(&gate.device()) {
            fused::swiglu(gate, up)
        } else {
            silu(gate) * up
        };
        self.down_proj.forward(h)
    }
}

/// How rotary embeddings are stretched past the context the model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RopeScaling {
    /// Plain RoPE.
    #[default]
    None,
    /// Position interpolation: positions are divided by `factor`.
    Linear { factor: f64 },
    /// NTK-aware scaling: the base grows to `theta · factor^(d/(d-2))`, stretching low
    /// frequencies more than high ones.
    Ntk { factor: f64 },
    /// YaRN (Peng et al. 2023), as HF transformers computes it: frequencies between the `beta_fast`
    /// and `beta_slow` rotation counts are blended between interpolated and original, and
    /// cos/sin are scaled by `0.1·ln(factor) + 1`.
    Yarn {
        factor: f64,
        original_max_position: usize,
        #[serde(default = "default_beta_fast")]
        beta_fast: f64,
        #[serde(default = "default_beta_slow")]
        beta_slow: f64,
    },
}

fn default_beta_fast() -> f64 {
    32.0
}
fn default_beta_slow() -> f64 {
    1.0
}

/// Rotary position embeddings in HF's "rotate half" layout: the first half of each head's
/// channels pairs with the second half.
#[derive(Debug, Clone)]
pub struct Rope {
    /// One inverse frequency per channel pair, in f32 exactly as HF computes them.
    inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN's attention temperature; 1 otherwise).
    attention_factor: f32,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, scaling: RopeScaling) -> Self {
        let d = head_dim as f64;
        let base = match scaling {
            RopeScaling::Ntk { factor } => theta * factor.powf(d / (d - 2.0)),
            _ => theta,
        };
        // HF: 1 / base^(arange(0, d, 2) / d), in f32.
        let plain: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / (base as f32).powf((2 * i) as f32 / head_dim as f32)) as f32)
            .collect();
        let (inv_freq, attention_factor) = match scaling {
            RopeScaling::None | RopeScaling::Ntk { .. } => (plain, 1.0),
            // HF divides the frequencies rather than the positions; same angles, same rounding.
            RopeScaling::Linear { factor } => {
                (plain.iter().map(|f| f / factor as f32).collect(), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position,
                beta_fast,
                beta_slow,
            } => {
                let orig = original_max_position as f64;
                // The channel index at which a frequency completes `rotations` turns over the
                // original context.
                let dim_at = |rotations: f64| {
                    d * (orig / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
                };
                let low = dim_at(beta_fast).floor().max(0.0);
                let high = dim_at(beta_slow).ceil().min(d - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                let inv: Vec<f32> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, &extrapolated)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0) as f32;
                        let extrapolation_factor = 1.0 - ramp;
                        let interpolated = extrapolated / factor as f32;
                        interpolated * (1.0 - extrapolation_factor)
                            + extrapolated * extrapolation_factor
                    })
                    .collect();
                let mscale = if factor <= 1.0 {
                    1.0
                } else {
                    0.1 * factor.ln() + 1.0
                };
                (inv, mscale as f32)
            }
        };
        Self {
            inv_freq,
            attention_factor,
        }
    }

    /// `(cos, sin)` of shape `[n_positions, head_dim]` for positions `start..start+n`.
    pub fn cos_sin(&self, start: usize, n: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let mut cos = Vec::with_capacity(n * dim);
        let mut sin = Vec::with_capacity(n * dim);
        for p in start..start + n {
            let pos = p as f32;
            let row: Vec<f32> = self.inv_freq.iter().map(|&f| pos * f).collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos() * self.attention_factor));
                sin.extend(row.iter().map(|a| a.sin() * self.attention_factor));
            }
        }
        (
            Tensor::from_data(TensorData::new(cos, [n, dim]), device),
            Tensor::from_data(TensorData::new(sin, [n, dim]), device),
        )
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` by the angles in `cos`/`sin`
    /// (`[seq, head_dim]`).
    pub fn apply(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = cos.clone().reshape([1, 1, t, d]);
        let sin = sin.clone().reshape([1, 1, t, d]);
        let _ = (b, h);
        x * cos + rotated * sin
    }
}
