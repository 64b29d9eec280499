//! The Llama-style decoder: token embedding, pre-norm blocks of grouped-query attention with
//! rotary embeddings and a SwiGLU (or mixture-of-experts) feed-forward, a final RMSNorm and the LM
//! head. Field names make Burn's parameter paths HF's (`model.layers.0.self_attn.q_proj.weight`),
//! so import and export are a table (see `hf.rs`).

use crate::arch::Arch;
use crate::attention::{AttentionPattern, KvCache, SelfAttention, attention_mask};
use crate::blocks::{RmsNorm, Rope, RopeScaling, SwiGlu, linear};
use crate::diffusion::DiffusionConfig;
use crate::loss::{LmOutput, TokenBatch, TokenLogprobs, causal_lm_loss};
use crate::moe::{MoeConfig, MoeLayer, MoeStats};
use crate::tree::{TreeBias, TreeConfig, TreeModule, TreePositions};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The largest vocabulary: token ids must fit the `i32` of Burn's integer tensors.
pub const MAX_VOCAB: usize = i32::MAX as usize;

/// The largest of any other size in a config (2³²−1).
pub const MAX_DIM: usize = u32::MAX as usize;

/// Everything that fixes a model's shape. This is the recipe's `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaConfig {
    /// Vocabulary size; 0 takes it from the tokenizer.
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads for grouped-query attention; 0 means `n_heads` (plain multi-head).
    pub n_kv_heads: usize,
    /// Hidden width of the SwiGLU feed-forward; 0 means Llama's `8/3 · d_model` rounded up to 64.
    pub d_ff: usize,
    /// Longest sequence the model is meant for (HF's `max_position_embeddings`).
    pub max_seq_len: usize,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub rms_norm_eps: f64,
    /// Share the embedding matrix with the LM head.
    pub tie_embeddings: bool,
    /// Standard deviation of the normal initialization of every matrix.
    pub init_std: f64,
    /// Attention pattern per layer (`causal`, `sliding:W`, `global:G:W`, `dilated:W:D`). One entry
    /// applies to every layer; otherwise the list is repeated over the layers and its length must
    /// divide `n_layers`.
    pub attention: Vec<String>,
    /// Replace the feed-forward with a mixture of experts.
    pub moe: Option<MoeConfig>,
    /// The tree transformer's additions (`arch = "tree"`; `tree.rs`): tree positional
    /// encodings and a tree attention bias, from the shards' AST positions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeConfig>,
    /// The masked-diffusion denoiser (`arch = "diffusion"`; `diffusion.rs`): bidirectional
    /// attention, trained to unmask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diffusion: Option<DiffusionConfig>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            vocab_size: 0,
            d_model: 256,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 0,
            d_ff: 0,
            max_seq_len: 2048,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            rms_norm_eps: 1e-5,
            tie_embeddings: false,
            init_std: 0.02,
            attention: vec!["causal".into()],
            moe: None,
            tree: None,
            diffusion: None,
        }
    }
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        if self.n_kv_heads == 0 {
            self.n_heads
        } else {
            self.n_kv_heads
        }
    }

    pub fn ff_dim(&self) -> usize {
        if self.d_ff == 0 {
            (8 * self.d_model / 3).div_ceil(64) * 64
        } else {
            self.d_ff
        }
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Exact parameter count of [`LlamaConfig::init`]'s model, computed without allocating (and
    /// without overflow for any config a file can hold), so oversized configs can be refused
    /// before anything is built.
    pub fn parameter_count(&self) -> u128 {
        // Saturating: a hostile config's sizes multiply past u128 (and then cannot fit anyway).
        let mul = |xs: &[u128]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x));
        let (d, v) = (self.d_model as u128, self.vocab_size as u128);
        let kv = (self.kv_heads() * self.head_dim()) as u128;
        let attention = mul(&[2, d, d]).saturating_add(mul(&[2, d, kv]));
        let swiglu = |hidden: u128| mul(&[3, d, hidden]);
        let ffn = match &self.moe {
            None => swiglu(self.ff_dim() as u128),
            Some(m) => {
                let e = if m.d_expert == 0 {
                    self.ff_dim()
                } else {
                    m.d_expert
                } as u128;
                let n = m.n_experts as u128;
                mul(&[d, n])
                    .saturating_add(mul(&[n, swiglu(e)]))
                    .saturating_add(swiglu(mul(&[e, m.n_shared as u128])))
            }
        };
        let layer = attention.saturating_add(ffn).saturating_add(2 * d);
        let head = if self.tie_embeddings { 0 } else { mul(&[v, d]) };
        let tree = self.tree.as_ref().map_or(0, |t| {
            t.parameter_count(self.n_layers, self.n_heads, self.d_model)
        });
        mul(&[v, d])
            .saturating_add(mul(&[self.n_layers as u128, layer]))
            .saturating_add(d)
            .saturating_add(head)
            .saturating_add(tree)
    }

    /// The pattern of every layer, in order.
    pub fn patterns(&self) -> Result<Vec<AttentionPattern>, (String, String)> {
        let parsed = self
            .attention
            .iter()
            .map(|s| s.parse::<AttentionPattern>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("attention".to_string(), e))?;
        if parsed.is_empty() || self.n_layers % parsed.len() != 0 {
            return Err((
                "attention".into(),
                format!(
                    "{} patterns do not repeat evenly over {} layers",
                    parsed.len(),
                    self.n_layers
                ),
            ));
        }
        Ok((0..self.n_layers)
            .map(|i| parsed[i % parsed.len()])
            .collect())
    }

    /// Checks every field; `Err((key, message))` names the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        for (key, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        // Beyond any real model, and small enough that size estimates cannot overflow.
        let moe_sizes = self
            .moe
            .as_ref()
            .map_or([0; 3], |m| [m.n_experts, m.n_shared, m.d_expert]);
        for (key, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
            ("moe.n_experts", moe_sizes[0]),
            ("moe.n_shared", moe_sizes[1]),
            ("moe.d_expert", moe_sizes[2]),
        ] {
            if v > MAX_DIM {
                return bad(
                    key,
                    format!("{v} is above the largest supported, {MAX_DIM}"),
                );
            }
        }
        // Token ids travel as 32-bit signed integers in tensors.
        if self.vocab_size > MAX_VOCAB {
            return bad(
                "vocab_size",
                format!(
                    "{} is above the largest supported, {MAX_VOCAB}",
                    self.vocab_size
                ),
            );
        }
        if self.d_model % self.n_heads != 0 {
            return bad(
                "n_heads",
                format!(
                    "{} heads do not divide d_model = {}",
                    self.n_heads, self.d_model
                ),
            );
        }
        if self.head_dim() % 2 != 0 {
            return bad(
                "n_heads",
                format!(
                    "head size d_model / n_heads = {} must be even for rotary embeddings",
                    self.head_dim()
                ),
            );
        }
        if self.n_heads % self.kv_heads() != 0 {
            return bad(
                "n_kv_heads",
                format!(
                    "{} key/value heads do not divide {} query heads",
                    self.kv_heads(),
                    self.n_heads
                ),
            );
        }
        if !(self.rope_theta > 1.0) {
            return bad("rope_theta", "must be greater than 1".into());
        }
        match self.rope_scaling {
            RopeScaling::Linear { factor }
            | RopeScaling::Ntk { factor }
            | RopeScaling::Yarn { factor, .. }
                if !(factor >= 1.0) =>
            {
                return bad("rope_scaling.factor", "must be at least 1".into());
            }
            _ => {}
        }
        if !(self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", "must be positive".into());
        }
        if !(self.init_std > 0.0) {
            return bad("init_std", "must be positive".into());
        }
        self.patterns()?;
        if let Some(moe) = &self.moe {
            moe.validate().map_err(|(k, m)| (format!("moe.{k}"), m))?;
        }
        if let Some(tree) = &self.tree {
            tree.validate(self.n_layers)
                .map_err(|(k, m)| (format!("tree.{k}"), m))?;
        }
        if let Some(d) = &self.diffusion {
            if self.tree.is_some() {
                return Err((
                    "diffusion".into(),
                    "a model is a tree transformer or a diffusion denoiser, not both".into(),
                ));
            }
            d.validate()
                .map_err(|(k, m)| (format!("diffusion.{k}"), m))?;
        }
        Ok(())
    }

    /// Whether the model reads the shards' per-token tree positions: a tree model, or a
    /// denoiser that masks whole syntax nodes.
    pub fn reads_tree_positions(&self) -> bool {
        self.tree.is_some()
            || self
                .diffusion
                .as_ref()
                .is_some_and(|d| d.ast_mask_rate > 0.0)
    }

    /// The architecture this config builds (its tag in `model.json`).
    pub fn arch(&self) -> Arch {
        if self.diffusion.is_some() {
            Arch::Diffusion
        } else if self.tree.is_some() {
            Arch::Tree
        } else {
            Arch::Llama
        }
    }

    /// Makes this config architecture `arch`: its section gets the defaults when missing; a
    /// section of another architecture is an error naming it.
    pub fn set_arch(&mut self, arch: Arch) -> Result<(), String> {
        let own = |a: Arch| arch == a;
        if self.tree.is_some() && !own(Arch::Tree)
            || self.diffusion.is_some() && !own(Arch::Diffusion)
        {
            return Err(format!(
                "`{}`: a `{arch}` model has no such section",
                self.arch().section().unwrap_or("arch")
            ));
        }
        match arch {
            Arch::Llama => {}
            Arch::Tree => {
                self.tree.get_or_insert_with(TreeConfig::default);
            }
            Arch::Diffusion => {
                self.diffusion.get_or_insert_with(DiffusionConfig::default);
            }
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Llama {
        assert!(
            self.vocab_size > 0,
            "vocab_size must be resolved before init"
        );
        let patterns = self.patterns().expect("config validated before init");
        let layers = patterns
            .iter()
            .map(|&pattern| DecoderLayer::new(self, pattern, device))
            .collect();
        let embed_tokens = EmbeddingConfig::new(self.vocab_size, self.d_model)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: self.init_std,
            })
            .init(device);
        Llama {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm: RmsNorm::new(self.d_model, self.rms_norm_eps, device),
            },
            lm_head: (!self.tie_embeddings)
                .then(|| linear(self.d_model, self.vocab_size, self.init_std, device)),
            tree: self
                .tree
                .as_ref()
                .map(|t| TreeModule::new(t, self.n_layers, self.n_heads, self.d_model, device)),
            rope: RopeTable(Rope::new(
                self.head_dim(),
                self.rope_theta,
                self.rope_scaling,
            )),
            config: self.clone(),
        }
    }
}

/// One pre-norm block: `x + attn(norm(x))`, then `x + ffn(norm(x))`.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: SelfAttention,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    /// The dense feed-forward, or `None` when this layer uses experts.
    pub mlp: Option<SwiGlu>,
    pub moe: Option<MoeLayer>,
    #[module(skip)]
    pub pattern: AttentionPattern,
}

impl DecoderLayer {
    fn new(c: &LlamaConfig, pattern: AttentionPattern, device: &Device) -> Self {
        let (mlp, moe) = match &c.moe {
            Some(m) => (
                None,
                Some(m.init(c.d_model, c.ff_dim(), c.init_std, device)),
            ),
            None => (
                Some(SwiGlu::new(c.d_model, c.ff_dim(), c.init_std, device)),
                None,
            ),
        };
        Self {
            self_attn: SelfAttention::new(c.d_model, c.n_heads, c.kv_heads(), c.init_std, device),
            input_layernorm: RmsNorm::new(c.d_model, c.rms_norm_eps, device),
            post_attention_layernorm: RmsNorm::new(c.d_model, c.rms_norm_eps, device),
            mlp,
            moe,
            pattern,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        mask: Tensor<4, Bool>,
        bias: Option<TreeBias>,
        cache: Option<&mut KvCache>,
        stats: &mut Vec<MoeStats>,
    ) -> Tensor<3> {
        let h = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            cos,
            sin,
            mask,
            bias,
            cache,
        );
        let x = x + h;
        let normed = self.post_attention_layernorm.forward(x.clone());
        let ff = match (&self.mlp, &self.moe) {
            (Some(mlp), _) => mlp.forward(normed),
            (None, Some(moe)) => {
                let (out, s) = moe.forward(normed);
                stats.push(s);
                out
            }
            (None, None) => unreachable!("a layer has a dense or an expert feed-forward"),
        };
        x + ff
    }
}

/// HF's `LlamaModel`: everything but the LM head.
#[derive(Module, Debug)]
pub struct LlamaModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// Rotary tables are derived from the config, not learned: kept out of the parameter set.
#[derive(Debug, Clone)]
pub struct RopeTable(pub Rope);

/// HF's `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct Llama {
    pub model: LlamaModel,
    /// `None` when the embedding is tied.
    pub lm_head: Option<Linear>,
    /// The tree transformer's parameters (`arch = "tree"`).
    pub tree: Option<TreeModule>,
    #[module(skip)]
    pub rope: RopeTable,
    #[module(skip)]
    pub config: LlamaConfig,
}

impl Llama {
    pub fn device(&self) -> Device {
        self.model.embed_tokens.weight.val().device()
    }

    /// Hidden states after the final norm, `[batch, seq, d_model]`, for `ids` (`[batch · seq]`)
    /// at positions `start..start+seq` (after what the caches hold). `segments` (same shape as
    /// `ids`, training only) keeps packed documents apart.
    pub fn hidden(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        segments: Option<&[u16]>,
        caches: Option<&mut [KvCache]>,
        stats: &mut Vec<MoeStats>,
    ) -> Tensor<3> {
        self.hidden_in_tree(ids, batch, start, segments, None, caches, stats)
    }

    /// [`Self::hidden`] with the tokens' tree positions (a tree model's input besides the ids):
    /// those of every key, `[batch · (start + seq)]`, the cached tokens' and these (the bias
    /// relates each new token to all of them).
    #[allow(clippy::too_many_arguments)]
    pub fn hidden_in_tree(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        segments: Option<&[u16]>,
        tree: Option<&TreePositions>,
        mut caches: Option<&mut [KvCache]>,
        stats: &mut Vec<MoeStats>,
    ) -> Tensor<3> {
        let device = self.device();
        let seq = ids.len() / batch;
        let n_key = start + seq;
        let tokens: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, seq]), &device);
        let mut x = self.model.embed_tokens.forward(tokens);
        // Tokens without positions (none given) sit nowhere in the tree: no encoding, the
        // bias's "no position" bucket.
        let unplaced;
        let tree_in = match (&self.tree, tree) {
            (Some(m), Some(t)) => {
                assert_eq!(
                    t.depth.len(),
                    batch * n_key,
                    "tree positions of every key (cached and new) of every row"
                );
                Some((m, t))
            }
            (Some(m), None) => {
                unplaced = TreePositions::unplaced(1, batch * n_key);
                Some((m, &unplaced))
            }
            _ => None,
        };
        if let Some(enc) = tree_in.and_then(|(m, t)| m.encode(t, batch, seq, n_key)) {
            x = x + enc;
        }
        let buckets = tree_in
            .filter(|(m, _)| !m.bias.is_empty())
            .map(|(m, t)| std::sync::Arc::new(m.buckets(t, batch, seq, n_key)));
        let mut biased = 0;
        let (cos, sin) = self.rope.0.cos_sin(start, seq, &device);
        // One mask per distinct pattern, shared by the layers that use it.
        let mut masks: Vec<(AttentionPattern, Tensor<4, Bool>)> = Vec::new();
        // The denoiser sees its whole document both ways: one mask for every layer.
        let bidirectional = self.config.diffusion.is_some().then(|| {
            assert!(start == 0, "the diffusion denoiser has no KV cache");
            crate::diffusion::document_mask(batch, seq, segments, &device)
        });
        for (i, layer) in self.model.layers.iter().enumerate() {
            let mask = match masks.iter().find(|(p, _)| *p == layer.pattern) {
                _ if bidirectional.is_some() => bidirectional.clone().expect("checked"),
                Some((_, m)) => m.clone(),
                None => {
                    let m =
                        attention_mask(layer.pattern, batch, start, seq, n_key, segments, &device);
                    masks.push((layer.pattern, m.clone()));
                    m
                }
            };
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            let bias = match (&self.tree, &buckets) {
                (Some(m), Some(ids)) if m.config.biased(i) => {
                    biased += 1;
                    Some(m.layer_bias(biased - 1, ids))
                }
                _ => None,
            };
            x = layer.forward(x, &cos, &sin, mask, bias, cache, stats);
        }
        self.model.norm.forward(x)
    }

    /// The LM head's weight as `[d_model, vocab]`.
    pub fn head_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.model.embed_tokens.weight.val().transpose(),
        }
    }

    /// Logits `[batch, seq, vocab]`.
    pub fn logits(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        caches: Option<&mut [KvCache]>,
    ) -> Tensor<3> {
        let h = self.hidden(ids, batch, start, None, caches, &mut Vec::new());
        h.matmul(self.head_weight().unsqueeze())
    }

    /// Empty caches, one per layer.
    pub fn new_caches(&self) -> Vec<KvCache> {
        vec![KvCache::default(); self.model.layers.len()]
    }

    /// Per row, the summed log-probability of its target tokens (`[batch]`, differentiable).
    pub fn sequence_logprobs(&self, batch: &TokenBatch) -> Tensor<1> {
        let h = self.batch_hidden(batch, &mut Vec::new());
        crate::loss::sequence_logprobs(h, self.head_weight(), batch)
    }

    /// [`Self::hidden`] of a training batch: its rows from position 0, documents kept apart.
    fn batch_hidden(&self, batch: &TokenBatch, stats: &mut Vec<MoeStats>) -> Tensor<3> {
        self.hidden_in_tree(
            &batch.input_ids,
            batch.batch,
            0,
            batch.segment_ids.as_deref(),
            batch.tree.as_ref(),
            None,
            stats,
        )
    }

    /// Per position, the log-probability of its target under `softmax(logits / temperature)`
    /// (`[batch, seq]`, differentiable), and with `entropy` that distribution's entropy: see
    /// [`TokenLogprobs`].
    pub fn token_logprobs(
        &self,
        batch: &TokenBatch,
        temperature: f32,
        entropy: bool,
    ) -> TokenLogprobs {
        let h = self.batch_hidden(batch, &mut Vec::new());
        crate::loss::token_logprobs(h, self.head_weight(), batch, temperature, entropy)
    }

    /// Causal-LM loss on a packed batch (summed over target tokens; see [`LmOutput`]).
    pub fn loss(&self, batch: &TokenBatch) -> LmOutput {
        let mut stats = Vec::new();
        let h = self.batch_hidden(batch, &mut stats);
        let mut out = causal_lm_loss(h, self.head_weight(), batch);
        if let Some(moe) = &self.config.moe {
            out.aux_loss = MoeStats::aux_loss(&stats, moe);
            out.expert_load = stats.iter().map(|s| s.load.clone()).collect();
        }
        out
    }
}
