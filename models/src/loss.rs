//! The causal language-modelling loss on packed rows, shared by every decoder.

use crate::fused;
use crate::precision;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// A batch of packed rows as the data pipeline writes them: `batch` rows of `seq_len` tokens,
/// row-major, with per-token document ids (1-based, 0 = padding) when the rows are packed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenBatch {
    pub input_ids: Vec<u32>,
    pub segment_ids: Option<Vec<u16>>,
    /// Which tokens are predicted (same shape as `input_ids`): supervised fine-tuning trains on
    /// completions only, so prompt tokens are context, not targets. `None`: every token.
    pub loss_mask: Option<Vec<bool>>,
    pub batch: usize,
    pub seq_len: usize,
    /// Per token, its place in the syntax tree (shards tokenized with `ast`), for tree models.
    pub tree: Option<crate::tree::TreePositions>,
    /// Targets at the positions themselves instead of the next tokens (the diffusion denoiser
    /// predicts each masked position's original token).
    pub position_targets: Option<PositionTargets>,
}

/// Per position, its own target and loss weight (`batch · seq_len`, row-major).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PositionTargets {
    /// The token to predict, −1 where none.
    pub targets: Vec<i64>,
    /// Its weight in the summed loss (the diffusion ELBO weight), 0 where no target.
    pub weights: Vec<f32>,
    /// The positions the loss is normalized over (the tokens that could have been masked):
    /// their count is the batch's `n_targets`, their text its bytes.
    pub counted: Vec<bool>,
    /// The tokens before masking.
    pub originals: Vec<u32>,
}

impl TokenBatch {
    /// `batch` unpacked rows of `seq_len` tokens (row-major), every next token a target.
    pub fn rows(input_ids: Vec<u32>, batch: usize, seq_len: usize) -> TokenBatch {
        assert_eq!(input_ids.len(), batch * seq_len, "rows × length tokens");
        TokenBatch {
            input_ids,
            batch,
            seq_len,
            ..TokenBatch::default()
        }
    }

    /// For every position, the next token and whether it is a target: the next position must
    /// exist, belong to the same (non-padding) document and be in the loss mask. Returns
    /// `(targets, weights, count)`.
    pub fn targets(&self) -> (Vec<i64>, Vec<f32>, usize) {
        if let Some(p) = &self.position_targets {
            let count = p.counted.iter().filter(|&&c| c).count();
            // As for next tokens: 0 where there is no target (its weight is 0).
            let targets = p.targets.iter().map(|&t| t.max(0)).collect();
            return (targets, p.weights.clone(), count);
        }
        let n = self.batch * self.seq_len;
        let mut targets = vec![0i64; n];
        let mut weights = vec![0f32; n];
        let mut count = 0;
        for b in 0..self.batch {
            for i in 0..self.seq_len.saturating_sub(1) {
                let at = b * self.seq_len + i;
                let same_doc = match &self.segment_ids {
                    Some(s) => s[at] != 0 && s[at] == s[at + 1],
                    None => true,
                };
                let ok = same_doc && self.loss_mask.as_ref().is_none_or(|m| m[at + 1]);
                if ok {
                    targets[at] = self.input_ids[at + 1] as i64;
                    weights[at] = 1.0;
                    count += 1;
                }
            }
        }
        (targets, weights, count)
    }
}

impl TokenBatch {
    /// The tokens whose text the loss covers, for bits per byte: the targets, or with position
    /// targets the counted positions' original tokens.
    pub fn scored_ids(&self) -> Vec<u32> {
        if let Some(p) = &self.position_targets {
            return p
                .originals
                .iter()
                .zip(&p.counted)
                .filter(|(_, c)| **c)
                .map(|(&t, _)| t)
                .collect();
        }
        let (targets, weights, _) = self.targets();
        targets
            .iter()
            .zip(&weights)
            .filter(|(_, w)| **w > 0.0)
            .map(|(&t, _)| t as u32)
            .collect()
    }
}

/// What a model returns for a batch. The trainer divides `nll_sum` by the target tokens of the
/// whole accumulated step, so micro-batches with more real tokens weigh more.
#[derive(Debug)]
pub struct LmOutput {
    /// Sum of the negative log-likelihoods of the target tokens, shape `[1]`.
    pub nll_sum: Tensor<1>,
    /// Number of target tokens in the batch.
    pub n_targets: usize,
    /// Auxiliary losses (MoE balance and z-loss), already multiplied by their coefficients and
    /// averaged over the batch's tokens, shape `[1]`.
    pub aux_loss: Option<Tensor<1>>,
    /// Per MoE layer, the fraction of routed tokens each expert received.
    pub expert_load: Vec<Vec<f32>>,
}

/// Rows of the LM head processed at once: bounds the `[rows, vocab]` logits kept alive.
const CHUNK_ROWS: usize = 512;

/// Negative log-likelihood of the next tokens given final hidden states `h` (`[batch, seq, d]`)
/// and the LM head `head` (`[d, vocab]`).
pub fn causal_lm_loss(h: Tensor<3>, head: Tensor<2>, batch: &TokenBatch) -> LmOutput {
    let [b, t, d] = h.dims();
    let (targets, weights, n_targets) = batch.targets();
    LmOutput {
        nll_sum: nll(h.reshape([b * t, d]), head, &targets, &weights),
        n_targets,
        aux_loss: None,
        expert_load: Vec::new(),
    }
}

/// Per row of the batch, the summed log-probability of its target tokens, shape `[batch]`,
/// differentiable: what DPO and GRPO compare between a policy and its reference. The row sums
/// of [`token_logprobs`] at temperature 1.
pub fn sequence_logprobs(h: Tensor<3>, head: Tensor<2>, batch: &TokenBatch) -> Tensor<1> {
    let b = h.dims()[0];
    token_logprobs(h, head, batch, 1.0, false)
        .logprobs
        .sum_dim(1)
        .reshape([b])
}

/// Per-token log-probabilities of a batch's targets: what GRPO's and DPO's losses are built
/// from (token-level ratios, KL to a reference, entropy bonuses).
#[derive(Debug)]
pub struct TokenLogprobs {
    /// `[batch, seq]`: at position `i`, `log p(target_i | tokens ..=i)` under the tempered
    /// distribution `softmax(logits / temperature)` where [`TokenBatch::targets`] gives a
    /// target, 0 elsewhere. Differentiable.
    pub logprobs: Tensor<2>,
    /// With `entropy`: per position (`batch · seq`, row-major), the entropy in nats of that same
    /// tempered next-token distribution where there is a target, 0 elsewhere. Host values, no
    /// gradient.
    pub entropy: Option<Vec<f32>>,
}

/// [`TokenLogprobs`] of the next tokens given final hidden states `h` (`[batch, seq, d]`) and
/// the LM head `head` (`[d, vocab]`), at `temperature` (> 0). The hidden states are divided by
/// it before the head: `(h / T) · W` is TRL's `logits / T` (the distribution the samples were
/// drawn from) at a `[rows, d]` division instead of a `[rows, vocab]` one.
pub fn token_logprobs(
    h: Tensor<3>,
    head: Tensor<2>,
    batch: &TokenBatch,
    temperature: f32,
    entropy: bool,
) -> TokenLogprobs {
    assert!(
        temperature > 0.0 && temperature.is_finite(),
        "token_logprobs: temperature must be positive and finite, not {temperature}"
    );
    let [b, t, d] = h.dims();
    let (targets, weights, _) = batch.targets();
    let h = h.reshape([b * t, d]);
    // At 1 no division at all: the plain log-probabilities keep their bits.
    let h = if temperature == 1.0 {
        h
    } else {
        h.div_scalar(temperature)
    };
    let (logprobs, entropy) = per_token(h, head, &targets, &weights, entropy);
    TokenLogprobs {
        logprobs: logprobs.reshape([b, t]),
        entropy,
    }
}

/// Per row of `h` (`[n, d]`), `log softmax(h_i · head)[target_i]` where `weight_i > 0`, else 0
/// (`[n]`), and with `entropy` each such row's entropy (host values, 0 elsewhere).
fn per_token(
    h: Tensor<2>,
    head: Tensor<2>,
    targets: &[i64],
    weights: &[f32],
    entropy: bool,
) -> (Tensor<1>, Option<Vec<f32>>) {
    let n = h.dims()[0];
    let device = h.device();
    if fused::enabled(&device) {
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(masked_targets(targets, weights), [n]),
            &device,
        );
        let (logp, ent) = fused::lm_head_logprobs(h, head, targets, entropy);
        return (logp, ent.map(host));
    }
    // Mixed precision: the products in the compute dtype, log-softmax in f32.
    let (h, head) = (precision::lower(h), precision::lower(head));
    let mut parts = Vec::new();
    let mut entropies = entropy.then(|| Vec::with_capacity(n));
    let mut start = 0;
    while start < n {
        let rows = CHUNK_ROWS.min(n - start);
        let logits = precision::raise(h.clone().narrow(0, start, rows).matmul(head.clone()));
        let logp = log_softmax(logits, 1);
        let w = &weights[start..start + rows];
        if let Some(all) = &mut entropies {
            let lp = logp.clone().detach();
            let ent = host((lp.clone().exp() * lp).sum_dim(1).neg().reshape([rows]));
            all.extend(
                ent.iter()
                    .zip(w)
                    .map(|(&e, &w)| if w > 0.0 { e } else { 0.0 }),
            );
        }
        let tgt = Tensor::<2, Int>::from_data(
            TensorData::new(targets[start..start + rows].to_vec(), [rows, 1]),
            &device,
        );
        let w = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [rows, 1]), &device);
        parts.push((logp.gather(1, tgt) * w).reshape([rows]));
        start += rows;
    }
    (Tensor::cat(parts, 0), entropies)
}

/// The targets as the fused kernels take them: −1 where a position has none.
fn masked_targets(targets: &[i64], weights: &[f32]) -> Vec<i64> {
    targets
        .iter()
        .zip(weights)
        .map(|(&t, &w)| if w > 0.0 { t } else { -1 })
        .collect()
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float values")
}

/// `Σ weight_i · −log softmax(h_i · head)[target_i]` over the rows of `h` (`[n, d]`).
fn nll(h: Tensor<2>, head: Tensor<2>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    let n = h.dims()[0];
    let device = h.device();
    if fused::enabled(&device) {
        let masked = masked_targets(targets, weights);
        let ids = Tensor::<1, Int>::from_data(TensorData::new(masked, [n]), &device);
        if weights.iter().all(|&w| w == 0.0 || w == 1.0) {
            return fused::lm_head_nll(h, head, ids);
        }
        // Other weights (the diffusion ELBO's) scale each row's log-probability.
        let (logp, _) = fused::lm_head_logprobs(h, head, ids, false);
        let w = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [n]), &device);
        return (logp * w).sum().neg();
    }
    // Mixed precision: the products in the compute dtype, log-softmax in f32.
    let (h, head) = (precision::lower(h), precision::lower(head));
    let mut total: Option<Tensor<1>> = None;
    let mut start = 0;
    while start < n {
        let rows = CHUNK_ROWS.min(n - start);
        let logits = precision::raise(h.clone().narrow(0, start, rows).matmul(head.clone()));
        let logp = log_softmax(logits, 1);
        let tgt = Tensor::<2, Int>::from_data(
            TensorData::new(targets[start..start + rows].to_vec(), [rows, 1]),
            &device,
        );
        let w = Tensor::<2>::from_data(
            TensorData::new(weights[start..start + rows].to_vec(), [rows, 1]),
            &device,
        );
        let part = (logp.gather(1, tgt) * w).sum().neg();
        total = Some(match total {
            Some(acc) => acc + part,
            None => part,
        });
        start += rows;
    }
    total.expect("a batch has at least one row")
}
