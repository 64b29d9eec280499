//! The masked-diffusion denoiser (`model.arch = "diffusion"`): the Llama blocks without the
//! causal mask (documents of a packed row still kept apart), trained to predict the original
//! token at every position replaced by the absorbing state `<|mask|>` — the absorbing-state
//! discrete diffusion of MDLM (Sahoo et al. 2024) and LLaDA (Nie et al. 2025).
//!
//! Training draws, per row, a time t ∈ [t_min, 1] (antithetically over the batch: evenly spread
//! from one uniform draw), masks each token with the schedule's probability `1 − α_t`, and
//! minimizes the cross-entropy of the masked tokens weighted by the continuous-time ELBO weight
//! `−α'_t / (1 − α_t)` (1/t for the linear schedule), normalized by the row's tokens: an upper
//! bound on the negative log-likelihood per token. Rows of prompt + completion (SFT data) never
//! mask the prompt; with probability `cfg_dropout` the prompt is replaced by masks as well, so the
//! model also learns the unconditional distribution that classifier-free guidance needs.
//! AST-aware masking (`ast_mask_rate`) masks whole syntax nodes — the shape of real edits — from
//! the shards' tree positions.

use crate::loss::{PositionTargets, TokenBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

/// How the share of masked tokens grows with the diffusion time t ∈ (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseSchedule {
    /// `1 − α_t = t` (MDLM's and LLaDA's).
    #[default]
    Linear,
    /// `1 − α_t = 1 − cos(πt/2)` (Nichol & Dhariwal's cosine, few masks early).
    Cosine,
    /// `1 − α_t = √t` (many masks early).
    Sqrt,
}

impl NoiseSchedule {
    /// The probability that a token is masked at time `t`.
    pub fn mask_rate(self, t: f64) -> f64 {
        match self {
            Self::Linear => t,
            Self::Cosine => 1.0 - (FRAC_PI_2 * t).cos(),
            Self::Sqrt => t.sqrt(),
        }
    }

    /// The ELBO weight of a masked token's cross-entropy at `t`: `−α'_t / (1 − α_t)`.
    pub fn elbo_weight(self, t: f64) -> f64 {
        match self {
            Self::Linear => 1.0 / t,
            Self::Cosine => FRAC_PI_2 * (FRAC_PI_2 * t).sin() / (1.0 - (FRAC_PI_2 * t).cos()),
            Self::Sqrt => 0.5 / t,
        }
    }
}

/// The recipe's `[model.diffusion]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    pub schedule: NoiseSchedule,
    /// Smallest time drawn: the ELBO weight grows like 1/t near 0, and a row with almost no mask
    /// says little at a large weight.
    pub t_min: f64,
    /// Per row, the probability that masking takes whole syntax nodes instead of independent
    /// tokens (needs shards with tree positions, `data.tokenize.ast = true`).
    pub ast_mask_rate: f64,
    /// For rows with a prompt (SFT data), the probability that the prompt is masked too (the
    /// unconditional case classifier-free guidance contrasts with).
    pub cfg_dropout: f64,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            schedule: NoiseSchedule::Linear,
            t_min: 1e-3,
            ast_mask_rate: 0.0,
            cfg_dropout: 0.1,
        }
    }
}

impl DiffusionConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        if !(self.t_min > 0.0 && self.t_min < 1.0) {
            return bad("t_min", format!("must be in (0, 1), got {}", self.t_min));
        }
        for (k, v) in [
            ("ast_mask_rate", self.ast_mask_rate),
            ("cfg_dropout", self.cfg_dropout),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(k, format!("must be in [0, 1], got {v}"));
            }
        }
        Ok(())
    }
}

/// `batch` with its tokens masked for one training (or validation) step: inputs carry
/// `mask_id` where masked, and [`PositionTargets`] the original tokens there with their ELBO
/// weights. `seed` decides everything (times, masks), so a resumed run masks as the first did.
pub fn noise_batch(batch: &TokenBatch, c: &DiffusionConfig, mask_id: u32, seed: u64) -> TokenBatch {
    let (rows, t) = (batch.batch, batch.seq_len);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = batch.clone();
    let n = rows * t;
    let mut targets = PositionTargets {
        targets: vec![-1; n],
        weights: vec![0.0; n],
        counted: vec![false; n],
        originals: batch.input_ids.clone(),
    };
    let u0: f64 = rng.random();
    for r in 0..rows {
        // Antithetic (low-discrepancy) times: one uniform draw, spread evenly over the rows.
        let u = (u0 + r as f64 / rows as f64).fract();
        let time = c.t_min + (1.0 - c.t_min) * u;
        let (rate, weight) = (c.schedule.mask_rate(time), c.schedule.elbo_weight(time));
        let row = r * t..(r + 1) * t;
        // Tokens that may be masked: real (not padding) and, in SFT rows, the completion's.
        let maskable: Vec<bool> = row
            .clone()
            .map(|i| {
                batch.segment_ids.as_ref().is_none_or(|s| s[i] != 0)
                    && batch.loss_mask.as_ref().is_none_or(|m| m[i])
            })
            .collect();
        let by_node = c.ast_mask_rate > 0.0 && rng.random_bool(c.ast_mask_rate);
        let masked = match (&batch.tree, by_node) {
            (Some(tree), true) => mask_nodes(
                tree,
                batch.segment_ids.as_deref(),
                row.clone(),
                &maskable,
                rate,
                &mut rng,
            ),
            _ => maskable
                .iter()
                .map(|&m| m && rng.random_bool(rate))
                .collect(),
        };
        for (k, i) in row.clone().enumerate() {
            targets.counted[i] = maskable[k];
            if masked[k] {
                targets.targets[i] = batch.input_ids[i] as i64;
                targets.weights[i] = weight as f32;
                out.input_ids[i] = mask_id;
            }
        }
        // Classifier-free guidance: sometimes the condition (the prompt) is masked as well.
        if let Some(lm) = &batch.loss_mask
            && c.cfg_dropout > 0.0
            && rng.random_bool(c.cfg_dropout)
        {
            for i in row {
                let real = batch.segment_ids.as_ref().is_none_or(|s| s[i] != 0);
                if real && !lm[i] {
                    out.input_ids[i] = mask_id;
                }
            }
        }
    }
    out.position_targets = Some(targets);
    out
}

/// Masks whole syntax nodes of one row until about `rate` of its maskable tokens are masked:
/// pick a maskable token with a position, a level of its path, and mask the run of maskable
/// tokens around it (same document) whose paths share that level's node.
fn mask_nodes(
    tree: &crate::tree::TreePositions,
    segments: Option<&[u16]>,
    row: std::ops::Range<usize>,
    maskable: &[bool],
    rate: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<bool> {
    let len = row.len();
    let mut masked = vec![false; len];
    let placed: Vec<usize> = (0..len)
        .filter(|&k| maskable[k] && tree.depth[row.start + k] > 0)
        .collect();
    let want = (rate * maskable.iter().filter(|&&m| m).count() as f64).round() as usize;
    let mut count = 0;
    // Bounded: a row whose nodes are all masked already stops.
    for _ in 0..4 * len {
        if count >= want || placed.is_empty() {
            break;
        }
        let k = placed[rng.random_range(0..placed.len())];
        let path = tree.path_of(row.start + k);
        if path.is_empty() {
            continue;
        }
        let level = rng.random_range(1..=path.len());
        let node = &path[..level];
        let doc = |j: usize| segments.map_or(0, |s| s[row.start + j]);
        let inside = |j: usize| {
            maskable[j] && doc(j) == doc(k) && tree.path_of(row.start + j).starts_with(node)
        };
        let (mut a, mut b) = (k, k);
        while a > 0 && inside(a - 1) {
            a -= 1;
        }
        while b + 1 < len && inside(b + 1) {
            b += 1;
        }
        for m in &mut masked[a..=b] {
            count += usize::from(!*m);
            *m = true;
        }
    }
    masked
}

/// The attention mask of the denoiser: every key of the query's own document (`[batch, 1, seq,
/// seq]`, true = may not attend), padding seeing and seen by nothing but itself.
pub fn document_mask(
    batch: usize,
    seq: usize,
    segments: Option<&[u16]>,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<4, burn::tensor::Bool> {
    let mut masked = Vec::with_capacity(batch * seq * seq);
    for b in 0..batch {
        for q in 0..seq {
            for k in 0..seq {
                let same = segments.is_none_or(|s| s[b * seq + q] == s[b * seq + k]);
                masked.push(!same);
            }
        }
    }
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(masked, [batch, 1, seq, seq]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each schedule's masking rate and ELBO weight against its formula, and the weight against
    /// `−α'/(1 − α)` by finite differences of the rate.
    #[test]
    fn schedules_follow_their_formulas() {
        use std::f64::consts::PI;
        for t in [0.01, 0.1, 0.37, 0.5, 0.9, 1.0] {
            assert_eq!(NoiseSchedule::Linear.mask_rate(t), t);
            assert_eq!(NoiseSchedule::Linear.elbo_weight(t), 1.0 / t);
            assert!(
                (NoiseSchedule::Cosine.mask_rate(t) - (1.0 - (PI * t / 2.0).cos())).abs() < 1e-15
            );
            assert!((NoiseSchedule::Sqrt.mask_rate(t) - t.sqrt()).abs() < 1e-15);
            for s in [
                NoiseSchedule::Linear,
                NoiseSchedule::Cosine,
                NoiseSchedule::Sqrt,
            ] {
                let h = 1e-6;
                let d_rate = (s.mask_rate(t + h) - s.mask_rate(t - h)) / (2.0 * h);
                // 1 − α = rate, so −α' = rate'.
                let want = d_rate / s.mask_rate(t);
                let got = s.elbo_weight(t);
                assert!(
                    (got - want).abs() < 1e-5 * want,
                    "{s:?} at {t}: {got} vs {want}"
                );
            }
        }
        assert_eq!(NoiseSchedule::Linear.mask_rate(1.0), 1.0);
        assert!((NoiseSchedule::Cosine.mask_rate(1.0) - 1.0).abs() < 1e-12);
    }

    fn rows(batch: usize, seq: usize) -> TokenBatch {
        TokenBatch {
            input_ids: (0..batch * seq).map(|i| 10 + (i % 50) as u32).collect(),
            segment_ids: Some(vec![1; batch * seq]),
            batch,
            seq_len: seq,
            ..TokenBatch::default()
        }
    }

    /// Over many rows the masked share is the schedule's rate at each row's time, and only
    /// masked positions are targets, weighted by the ELBO weight; inputs are `<|mask|>` there
    /// and untouched elsewhere.
    #[test]
    fn masking_follows_the_rate_and_targets_only_masked_tokens() {
        let (batch, seq) = (64, 256);
        let b = rows(batch, seq);
        let c = DiffusionConfig::default();
        let mut masked_share = Vec::new();
        for seed in 0..8 {
            let nb = noise_batch(&b, &c, 2, seed);
            let pt = nb.position_targets.as_ref().unwrap();
            for r in 0..batch {
                let mut m = 0;
                let mut w = None;
                for i in r * seq..(r + 1) * seq {
                    let is_masked = nb.input_ids[i] == 2;
                    assert_eq!(is_masked, pt.targets[i] >= 0);
                    if is_masked {
                        m += 1;
                        assert_eq!(pt.targets[i], b.input_ids[i] as i64);
                        w = Some(pt.weights[i]);
                    } else {
                        assert_eq!(nb.input_ids[i], b.input_ids[i]);
                        assert_eq!(pt.weights[i], 0.0);
                    }
                }
                // weight = 1/t for the linear schedule, so t = 1/weight and E[share] = t.
                if let Some(w) = w {
                    masked_share.push((m as f64 / seq as f64, 1.0 / w as f64));
                }
            }
        }
        let n = masked_share.len() as f64;
        let mean_err: f64 = masked_share.iter().map(|(s, t)| s - t).sum::<f64>() / n;
        assert!(
            mean_err.abs() < 0.01,
            "masked share vs t: mean error {mean_err}"
        );
        // Antithetic times cover (0, 1] evenly: their mean is near 1/2.
        let mean_t: f64 = masked_share.iter().map(|(_, t)| t).sum::<f64>() / n;
        assert!((mean_t - 0.5).abs() < 0.03, "{mean_t}");
    }

    /// Prompts (SFT rows: loss mask false) are never targets; with `cfg_dropout = 1` they are
    /// masked as inputs, with 0 never; padding is neither.
    #[test]
    fn prompts_are_never_targets_and_cfg_dropout_masks_them() {
        let (batch, seq) = (4, 32);
        let mut b = rows(batch, seq);
        b.loss_mask = Some((0..batch * seq).map(|i| i % seq >= 10).collect());
        let seg = b.segment_ids.as_mut().unwrap();
        for r in 0..batch {
            seg[r * seq + seq - 3..(r + 1) * seq].fill(0);
        }
        for (dropout, prompt_masked) in [(0.0, false), (1.0, true)] {
            let c = DiffusionConfig {
                cfg_dropout: dropout,
                ..DiffusionConfig::default()
            };
            let nb = noise_batch(&b, &c, 2, 5);
            let pt = nb.position_targets.as_ref().unwrap();
            for i in 0..batch * seq {
                let (pos, pad) = (i % seq, i % seq >= seq - 3);
                if pos < 10 {
                    assert_eq!(pt.targets[i], -1);
                    assert_eq!(nb.input_ids[i] == 2, prompt_masked);
                }
                if pad {
                    assert_eq!(pt.targets[i], -1);
                    assert_ne!(nb.input_ids[i], 2);
                    assert!(!pt.counted[i]);
                }
            }
        }
    }

    /// AST masking masks whole nodes: runs of masked tokens begin and end on node bounds.
    #[test]
    fn ast_masking_masks_whole_nodes() {
        let (batch, seq) = (2, 40);
        let mut b = rows(batch, seq);
        let mut tree = crate::tree::TreePositions {
            max_path: 3,
            ..Default::default()
        };
        // Nodes of 5 tokens (as the pieces of one identifier share its node) in nodes of 20.
        for i in 0..batch * seq {
            tree.push(2, &[(i % seq / 20) as u16, ((i % seq / 5) % 4) as u16]);
        }
        b.tree = Some(tree.clone());
        let c = DiffusionConfig {
            ast_mask_rate: 1.0,
            ..DiffusionConfig::default()
        };
        let mut runs = 0;
        for seed in 0..20 {
            let nb = noise_batch(&b, &c, 2, seed);
            for r in 0..batch {
                let m: Vec<bool> = (0..seq).map(|k| nb.input_ids[r * seq + k] == 2).collect();
                let mut k = 0;
                while k < seq {
                    if !m[k] {
                        k += 1;
                        continue;
                    }
                    let start = k;
                    while k < seq && m[k] {
                        k += 1;
                    }
                    runs += 1;
                    // Whole nodes only: a run starts and ends on the 5-token nodes' bounds.
                    assert!(
                        start % 5 == 0 && k % 5 == 0,
                        "seed {seed} row {r}: run {start}..{k}"
                    );
                }
            }
        }
        assert!(runs > 10);
    }
}
