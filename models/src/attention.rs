//! Grouped-query self-attention with rotary embeddings, per-layer attention patterns for long
//! contexts, document masking for packed rows, and a KV cache for decoding.

use crate::blocks::Rope;
use crate::fused;
use crate::lora::LoraLinear;
use crate::precision;
use crate::tree::TreeBias;
use burn::module::Module;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use std::fmt;
use std::str::FromStr;

/// Which keys a query may see, besides the causal rule (never the future) and the document rule
/// (never another document of a packed row), which every pattern obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionPattern {
    /// Every earlier position.
    Causal,
    /// The last `window` positions, the query's own included (local attention).
    Sliding { window: usize },
    /// A local window plus `global` tokens at the start of the row that every query sees and that
    /// see every earlier position (Longformer's global tokens, made causal).
    Global { global: usize, window: usize },
    /// Every `dilation`-th earlier position, `window` of them, the query's own included
    /// (dilated sliding window).
    Dilated { window: usize, dilation: usize },
}

impl AttentionPattern {
    /// May query position `q` attend to key position `k` (positions within the row)?
    pub fn allows(self, q: usize, k: usize) -> bool {
        if k > q {
            return false;
        }
        let dist = q - k;
        match self {
            Self::Causal => true,
            Self::Sliding { window } => dist < window,
            Self::Global { global, window } => dist < window || k < global || q < global,
            Self::Dilated { window, dilation } => dist % dilation == 0 && dist / dilation < window,
        }
    }

    /// Checks the numbers; `Err` names what is wrong.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Self::Causal => Ok(()),
            Self::Sliding { window } | Self::Global { window, .. } if window == 0 => {
                Err("window must be at least 1".into())
            }
            Self::Dilated { window, dilation } if window == 0 || dilation == 0 => {
                Err("window and dilation must be at least 1".into())
            }
            _ => Ok(()),
        }
    }
}

/// The recipe spelling: `causal`, `sliding:W`, `global:G:W`, `dilated:W:D`.
impl FromStr for AttentionPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |i: usize| -> Result<usize, String> {
            parts
                .get(i)
                .ok_or_else(|| format!("`{s}` is missing a number"))?
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: `{}` is not a whole number", parts[i]))
        };
        let want = |n: usize| {
            if parts.len() == n {
                Ok(())
            } else {
                Err(format!("`{s}` has {} fields, expected {n}", parts.len()))
            }
        };
        let pattern = match parts[0] {
            "causal" | "full" => want(1).map(|_| Self::Causal)?,
            "sliding" | "local" => want(2).and_then(|_| Ok(Self::Sliding { window: num(1)? }))?,
            "global" => want(3).and_then(|_| {
                Ok(Self::Global {
                    global: num(1)?,
                    window: num(2)?,
                })
            })?,
            "dilated" => want(3).and_then(|_| {
                Ok(Self::Dilated {
                    window: num(1)?,
                    dilation: num(2)?,
                })
            })?,
            other => {
                return Err(format!(
                    "unknown attention pattern `{other}` (expected causal, sliding:W, global:G:W or dilated:W:D)"
                ));
            }
        };
        pattern.validate().map_err(|e| format!("`{s}`: {e}"))?;
        Ok(pattern)
    }
}

impl fmt::Display for AttentionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Causal => write!(f, "causal"),
            Self::Sliding { window } => write!(f, "sliding:{window}"),
            Self::Global { global, window } => write!(f, "global:{global}:{window}"),
            Self::Dilated { window, dilation } => write!(f, "dilated:{window}:{dilation}"),
        }
    }
}

/// The boolean "masked out" matrix of shape `[batch, 1, n_query, n_key]` for queries at
/// positions `q_start..q_start+n_query` over keys `0..n_key`. `segments` holds one document id
/// per key position and row (`[batch · n_key]`, 1-based, 0 = padding); `None` means one document.
pub fn attention_mask(
    pattern: AttentionPattern,
    batch: usize,
    q_start: usize,
    n_query: usize,
    n_key: usize,
    segments: Option<&[u16]>,
    device: &Device,
) -> Tensor<4, Bool> {
    let mut masked = Vec::with_capacity(batch * n_query * n_key);
    for b in 0..batch {
        let seg = segments.map(|s| &s[b * n_key..(b + 1) * n_key]);
        // Leading padding (generation left-pads prompts of different lengths to batch them)
        // shifts the row: patterns count positions from its first real token, so a global
        // pattern's first tokens stay global. Packed training rows never start with padding.
        let off = seg.map_or(0, |s| s.iter().take_while(|&&x| x == 0).count());
        for qi in 0..n_query {
            let q = q_start + qi;
            for k in 0..n_key {
                let same_doc = seg.is_none_or(|s| s[q] == s[k]);
                let allowed = if q >= off && k >= off {
                    pattern.allows(q - off, k - off)
                } else {
                    k <= q
                };
                masked.push(!(same_doc && allowed));
            }
        }
    }
    Tensor::from_data(TensorData::new(masked, [batch, 1, n_query, n_key]), device)
}

/// Keys and values of the positions decoded so far, per layer, `[batch, kv_heads, seq, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub key: Option<Tensor<4>>,
    pub value: Option<Tensor<4>>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.key.as_ref().map_or(0, |k| k.dims()[2])
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Grouped-query attention: `n_heads` query heads share `n_kv_heads` key/value heads. Each
/// projection may carry a LoRA adapter ([`crate::lora`]).
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: LoraLinear,
    pub k_proj: LoraLinear,
    pub v_proj: LoraLinear,
    pub o_proj: LoraLinear,
    #[module(skip)]
    pub n_heads: usize,
    #[module(skip)]
    pub n_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
}

impl SelfAttention {
    pub fn new(
        d_model: usize,
        n_heads: usize,
        n_kv_heads: usize,
        init_std: f64,
        device: &Device,
    ) -> Self {
        let head_dim = d_model / n_heads;
        Self {
            q_proj: LoraLinear::new(d_model, n_heads * head_dim, init_std, device),
            k_proj: LoraLinear::new(d_model, n_kv_heads * head_dim, init_std, device),
            v_proj: LoraLinear::new(d_model, n_kv_heads * head_dim, init_std, device),
            o_proj: LoraLinear::new(n_heads * head_dim, d_model, init_std, device),
            n_heads,
            n_kv_heads,
            head_dim,
        }
    }

    /// `x`: `[batch, seq, d_model]`; `cos`/`sin`: the rotary angles of these positions; `mask`:
    /// `[batch, 1, seq, keys]` where `keys` counts the cached positions plus these; `bias` (a
    /// tree model's) is added to the logits. With a cache, the new keys and values are appended
    /// to it.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        mask: Tensor<4, Bool>,
        bias: Option<TreeBias>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        // Rotated and split into heads, `[batch, heads, seq, head_dim]`.
        let rotated = |y: Tensor<3>, n: usize| {
            if fused::enabled(&y.device()) {
                fused::rope(y, cos.clone(), sin.clone(), n)
            } else {
                Rope::apply(heads(y, n), cos, sin)
            }
        };
        let q = rotated(self.q_proj.forward(x.clone()), h);
        let mut k = rotated(self.k_proj.forward(x.clone()), kvh);
        let mut v = heads(self.v_proj.forward(x), kvh);
        if let Some(cache) = cache {
            if let (Some(pk), Some(pv)) = (cache.key.take(), cache.value.take()) {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.key = Some(k.clone());
            cache.value = Some(v.clone());
        }
        if fused::enabled(&q.device()) {
            let out = match bias {
                None => fused::attention(q, k, v, mask),
                Some(bias) => fused::bucket_attention(q, k, v, mask, bias.table, bias.ids),
            };
            return self
                .o_proj
                .forward(out.swap_dims(1, 2).reshape([b, t, h * hd]));
        }
        let n_key = k.dims()[2];
        if kvh != h {
            // Each key/value head serves `h / kvh` consecutive query heads, as in HF's repeat_kv.
            let group = h / kvh;
            let expand = |y: Tensor<4>| {
                y.unsqueeze_dim::<5>(2)
                    .expand([b, kvh, group, n_key, hd])
                    .reshape([b, h, n_key, hd])
            };
            k = expand(k);
            v = expand(v);
        }
        let mask = mask.expand([b, h, t, n_key]);
        let bias = bias.map(|b| precision::lower(b.dense()));
        let (q, k, v) = (
            precision::lower(q),
            precision::lower(k),
            precision::lower(v),
        );
        let out = attention(q, k, v, Some(mask), bias, AttentionModuleOptions::default());
        let out = precision::raise(out);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, h * hd]))
    }
}
