//! GRPO's arithmetic, as TRL's `GRPOTrainer` defines it (trl 1.16, `_compute_loss` and
//! `_generate_and_score_completions`): group-relative advantages, the clipped surrogate with
//! importance ratios against the sampling policy, the k3 KL estimate to the reference, and the
//! three normalizations of `loss_type`.
//!
//! Per completion token `t` of completion `i` (log-probabilities at the sampling temperature):
//!
//! ```text
//! ratio   = exp(logp − logp_old)
//! loss_t  = −min(ratio·A_i, clip(ratio, 1 − ε, 1 + ε_high)·A_i) + β·(exp(ref − logp) − (ref − logp) − 1)
//! ```
//!
//! and the batch's loss is `Σ_i Σ_t w_i · loss_t`, where `w_i` is `1/(|o_i|·N)` for `grpo`,
//! `1/(N·max_completion_tokens)` for `dr_grpo` and `1/Σ_i |o_i|` for `dapo` (`N` completions in
//! the batch). Computing the normalizers over the whole batch makes micro-batching and skipping
//! rows exact: a row is only a sum of its own terms.

use super::config::{LossType, RlConfig, ScaleRewards};
use super::rollout;
use super::trainer::{RlTrainer, host};
use crate::TrainError;
use crate::dist::{optimizer_step, scaled};
use crate::optim::{GradAccumulator, lr_at};
use anvil_models::{Llama, TokenBatch};
use burn::tensor::{Tensor, TensorData};
use std::time::Instant;

/// TRL adds this to the standard deviation before dividing.
const STD_EPS: f64 = 1e-4;

/// Per completion, its advantage; per group, whether its rewards were all equal (no signal).
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    pub values: Vec<f64>,
    pub zero_std: Vec<bool>,
}

/// Unbiased (Bessel-corrected) standard deviation, as torch's `std` and TRL's `nanstd`.
fn std(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// `rewards` holds `group` consecutive completions per prompt: advantage = reward − the group's
/// mean, divided by the group's (or the batch's) standard deviation + 1e-4 unless `None`.
pub fn advantages(rewards: &[f64], group: usize, scale: ScaleRewards) -> Advantages {
    assert!(
        group > 0 && rewards.len().is_multiple_of(group),
        "whole groups"
    );
    let batch_std = std(rewards);
    let mut values = Vec::with_capacity(rewards.len());
    let mut zero_std = Vec::with_capacity(rewards.len() / group);
    for g in rewards.chunks(group) {
        let mean = g.iter().sum::<f64>() / group as f64;
        let group_std = std(g);
        // torch.isclose(std, 0): |std| ≤ 1e-8.
        zero_std.push(group_std <= 1e-8);
        let div = match scale {
            ScaleRewards::Group => group_std + STD_EPS,
            ScaleRewards::Batch => batch_std + STD_EPS,
            ScaleRewards::None => 1.0,
        };
        values.extend(g.iter().map(|r| (r - mean) / div));
    }
    Advantages { values, zero_std }
}

/// Per completion, the weight of each of its tokens' losses (see the module docs): `lens[i]` is
/// the number of completion tokens of `i` that carry a loss (0 for a masked-out completion).
pub fn row_weights(loss_type: LossType, lens: &[usize], max_completion_tokens: usize) -> Vec<f64> {
    let n = lens.len().max(1) as f64;
    let total: usize = lens.iter().sum();
    lens.iter()
        .map(|&len| match loss_type {
            LossType::Grpo => 1.0 / (len.max(1) as f64 * n),
            LossType::DrGrpo => 1.0 / (n * max_completion_tokens as f64),
            LossType::Dapo => 1.0 / total.max(1) as f64,
        })
        .collect()
}

/// One micro-batch's rows, with everything the loss holds constant. Flat arrays are `[rows ·
/// seq]`, row-major, like the log-probabilities; `mask` is 1 on completion tokens with a loss.
pub struct PolicyRows<'a> {
    pub rows: usize,
    pub seq: usize,
    pub mask: &'a [f32],
    /// Log-probabilities under the policy that sampled the completions.
    pub old: &'a [f32],
    /// Under the reference (with `beta > 0`).
    pub reference: Option<&'a [f32]>,
    pub advantages: &'a [f64],
    pub weights: &'a [f64],
}

/// What a loss evaluation saw, summed over tokens (divide by `tokens` for means).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// The loss's value (its share of the batch's loss).
    pub loss: f64,
    pub tokens: usize,
    pub kl_sum: f64,
    /// Tokens whose ratio was clipped below (with a negative advantage) or above (positive).
    pub clipped_low: usize,
    pub clipped_high: usize,
    pub ratio_sum: f64,
}

impl LossStats {
    pub fn add(&mut self, o: &LossStats) {
        self.loss += o.loss;
        self.tokens += o.tokens;
        self.kl_sum += o.kl_sum;
        self.clipped_low += o.clipped_low;
        self.clipped_high += o.clipped_high;
        self.ratio_sum += o.ratio_sum;
    }

    pub fn kl(&self) -> f64 {
        self.kl_sum / self.tokens.max(1) as f64
    }

    /// As six numbers, for adding across ranks.
    pub fn to_vec(&self) -> [f64; 6] {
        [
            self.loss,
            self.tokens as f64,
            self.kl_sum,
            self.clipped_low as f64,
            self.clipped_high as f64,
            self.ratio_sum,
        ]
    }

    pub fn from_slice(v: &[f64]) -> LossStats {
        LossStats {
            loss: v[0],
            tokens: v[1] as usize,
            kl_sum: v[2],
            clipped_low: v[3] as usize,
            clipped_high: v[4] as usize,
            ratio_sum: v[5],
        }
    }

    /// TRL's `clip_ratio/region_mean`.
    pub fn clip_fraction(&self) -> f64 {
        (self.clipped_low + self.clipped_high) as f64 / self.tokens.max(1) as f64
    }
}

/// The loss of these rows given the policy's log-probabilities `logp` (`[rows, seq]`,
/// differentiable; `values` are its values on the host), and what it saw.
///
/// The min of the clipped and unclipped terms picks, per token, a term whose gradient is either
/// `A·ratio·∇logp` or 0 (where the clipped one is smaller, it is constant): the choice is made on
/// the host from the values, and only the unclipped terms enter the graph. The value returned in
/// the stats is the full loss, clipped terms included.
pub fn loss(
    cfg: &RlConfig,
    logp: Tensor<2>,
    values: &[f32],
    r: &PolicyRows,
) -> (Tensor<1>, LossStats) {
    let n = r.rows * r.seq;
    assert_eq!(values.len(), n, "log-probabilities are [rows, seq]");
    let (lo, hi) = (1.0 - cfg.epsilon, 1.0 + cfg.epsilon_high());
    let mut stats = LossStats::default();
    // Per token: the coefficient of `ratio` in the loss (−A·w where unclipped, else 0), and of
    // the KL term (β·w).
    let mut ratio_coef = vec![0f32; n];
    let mut kl_coef = vec![0f32; n];
    for i in 0..r.rows {
        let (a, w) = (r.advantages[i], r.weights[i]);
        for t in 0..r.seq {
            let at = i * r.seq + t;
            if r.mask[at] == 0.0 {
                continue;
            }
            stats.tokens += 1;
            let ratio = (values[at] as f64 - r.old[at] as f64).exp();
            stats.ratio_sum += ratio;
            let clipped = ratio.clamp(lo, hi);
            let (unclipped_term, clipped_term) = (ratio * a, clipped * a);
            if unclipped_term <= clipped_term {
                ratio_coef[at] = (-a * w) as f32;
            }
            stats.loss -= w * unclipped_term.min(clipped_term);
            if ratio < lo && a < 0.0 {
                stats.clipped_low += 1;
            }
            if ratio > hi && a > 0.0 {
                stats.clipped_high += 1;
            }
            if let Some(reference) = r.reference {
                let d = reference[at] as f64 - values[at] as f64;
                let kl = d.exp() - d - 1.0;
                stats.kl_sum += kl;
                stats.loss += cfg.beta * w * kl;
                kl_coef[at] = (cfg.beta * w) as f32;
            }
        }
    }
    let device = logp.device();
    let flat = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [r.rows, r.seq]), &device);
    let old = flat(r.old.to_vec());
    let ratio = (logp.clone() - old).exp();
    let mut total = (ratio * flat(ratio_coef)).sum();
    if let (Some(reference), true) = (r.reference, cfg.beta > 0.0) {
        let d = flat(reference.to_vec()) - logp;
        let kl = d.clone().exp() - d - 1.0;
        total = total + (kl * flat(kl_coef)).sum();
    }
    (total, stats)
}

// ---- The step ------------------------------------------------------------------------------------

impl RlTrainer {
    /// One GRPO step: rollouts of `group_size` completions per prompt, their rewards and
    /// group-relative advantages, then `num_iterations` updates on the rows that carry signal.
    pub(super) fn grpo_step(
        &mut self,
        model: Llama,
    ) -> Result<(Llama, Vec<(String, f64)>), TrainError> {
        let cfg = self.cfg.clone();
        let group = cfg.group_size;
        let mut metrics = Vec::new();
        let (rollouts, _, _, scores) = self.rollouts(&model, group, &mut metrics)?;
        let t0 = Instant::now();
        // Advantages and normalizers over the whole step's batch (every rank's completions);
        // this rank trains the rows it sampled, `scores.offset` onwards.
        let adv = advantages(&scores.totals, group, cfg.scale_rewards);
        let lens: Vec<usize> = (0..scores.tokens.len())
            .map(|i| {
                if cfg.mask_truncated_completions && scores.truncated[i] {
                    0
                } else {
                    scores.tokens[i]
                }
            })
            .collect();
        let weights = row_weights(cfg.loss_type, &lens, cfg.max_completion_tokens);
        // A zero-variance group has advantage 0 on every token: without a KL term its rows add
        // nothing to the loss or the gradient, so they are not run at all. The normalizers
        // above still count them, as TRL's do.
        let active: Vec<usize> = (0..lens.len())
            .filter(|&i| lens[i] > 0 && (cfg.beta > 0.0 || !adv.zero_std[i / group]))
            .collect();
        let mine = scores.offset..scores.offset + rollouts.len();
        let own: Vec<usize> = active
            .iter()
            .copied()
            .filter(|i| mine.contains(i))
            .collect();
        let zero = adv.zero_std.iter().filter(|&&z| z).count();
        metrics.push((
            "rl/zero_std_share".into(),
            zero as f64 / adv.zero_std.len() as f64,
        ));
        metrics.push(("rl/trained_rows".into(), active.len() as f64));

        let chunks: Vec<Vec<usize>> = own.chunks(cfg.micro_batch).map(<[usize]>::to_vec).collect();
        let pad = self.eos[0];
        let batches: Vec<TokenBatch> = chunks
            .iter()
            .map(|c| {
                let rows: Vec<(&[u32], &[u32])> = c
                    .iter()
                    .map(|&i| &rollouts[i - scores.offset])
                    .map(|r| (r.prompt.as_slice(), r.tokens.as_slice()))
                    .collect();
                rollout::batch(&rows, pad)
            })
            .collect();
        let masks: Vec<Vec<f32>> = batches.iter().map(rollout::target_mask).collect();
        let refs: Vec<Option<Vec<f32>>> = batches
            .iter()
            .map(|b| (cfg.beta > 0.0).then(|| self.reference_logprobs(&model, b, cfg.temperature)))
            .collect();
        let mut model = model;
        let mut old: Vec<Vec<f32>> = Vec::with_capacity(batches.len());
        // `first`: the first iteration's, at the sampling policy (its KL is the policy's
        // distance to the reference when it sampled); `all`: every iteration's.
        let (mut first, mut all) = (LossStats::default(), LossStats::default());
        let (mut entropy, mut grad_norm) = ((0f64, 0usize), 0.0);
        let lr = lr_at(
            self.state.step,
            self.recipe.optim.lr,
            &self.recipe.schedule,
            self.recipe.train.max_steps,
        );
        let mut step_tokens = 0u64;
        for it in 0..cfg.num_iterations {
            // Every rank steps together, also one without rows of its own this step.
            if active.is_empty() {
                break;
            }
            let mut grads = GradAccumulator::default();
            for (k, (b, c)) in batches.iter().zip(&chunks).enumerate() {
                let out = model.token_logprobs(b, cfg.temperature, it == 0);
                let values = host(out.logprobs.clone());
                if it == 0 {
                    // The sampling policy is the current one until the first update: its
                    // log-probabilities are this forward's (ratio exactly 1, as TRL's detach).
                    old.push(values.clone());
                    if let Some(h) = &out.entropy {
                        for (e, m) in h.iter().zip(&masks[k]) {
                            if *m > 0.0 {
                                entropy.0 += *e as f64;
                                entropy.1 += 1;
                            }
                        }
                    }
                }
                let advantages: Vec<f64> = c.iter().map(|&i| adv.values[i]).collect();
                let w: Vec<f64> = c.iter().map(|&i| weights[i]).collect();
                let rows = PolicyRows {
                    rows: b.batch,
                    seq: b.seq_len,
                    mask: &masks[k],
                    old: &old[k],
                    reference: refs[k].as_deref(),
                    advantages: &advantages,
                    weights: &w,
                };
                let (loss, s) = loss(&cfg, out.logprobs, &values, &rows);
                grads.add(
                    &model,
                    &scaled(loss, self.state.loss_scaler.as_ref()).backward(),
                );
                if it == 0 {
                    first.add(&s);
                }
                all.add(&s);
                step_tokens += (b.batch * b.seq_len) as u64;
            }
            let clip = self.recipe.optim.grad_clip;
            (model, grad_norm) = optimizer_step(
                self.dp.as_mut(),
                &mut self.opt,
                model,
                &mut grads,
                (lr, clip),
                self.state.loss_scaler.as_mut(),
            );
        }
        if self.world.is_distributed() {
            let mut sums = vec![step_tokens as f64, entropy.0, entropy.1 as f64];
            sums.extend(first.to_vec());
            sums.extend(all.to_vec());
            let s = self.world.sum(&sums);
            (step_tokens, entropy) = (s[0] as u64, (s[1], s[2] as usize));
            (first, all) = (
                LossStats::from_slice(&s[3..9]),
                LossStats::from_slice(&s[9..]),
            );
        }
        self.tokens += step_tokens;
        self.end_step();
        metrics.extend([
            ("rl/clip_fraction".into(), all.clip_fraction()),
            ("rl/grad_norm".into(), grad_norm),
            ("train/lr".into(), lr),
            ("rl/update_s".into(), t0.elapsed().as_secs_f64()),
        ]);
        // Without rows to train (every group without signal) there is no loss to report.
        if all.tokens > 0 {
            metrics.push(("rl/loss".into(), first.loss));
            metrics.push(("rl/ratio_mean".into(), all.ratio_sum / all.tokens as f64));
        }
        if entropy.1 > 0 {
            metrics.push(("rl/entropy".into(), entropy.0 / entropy.1 as f64));
        }
        if cfg.beta > 0.0 && first.tokens > 0 {
            metrics.push(("rl/kl".into(), first.kl()));
        }
        self.bar.set_position(self.state.step as u64);
        self.bar
            .set_message(format!("reward {:.3}", self.last_reward.unwrap_or(0.0)));
        Ok((model, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn cfg(beta: f64) -> RlConfig {
        RlConfig {
            epsilon: 0.2,
            epsilon_high: Some(0.28),
            beta,
            ..RlConfig::default()
        }
    }

    #[test]
    fn advantages_follow_trl() {
        // Group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3).
        let a = advantages(
            &[1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3],
            4,
            ScaleRewards::Group,
        );
        let s = (1.0f64 / 3.0).sqrt() + 1e-4;
        for (got, want) in a.values.iter().zip([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]) {
            assert!((got - want).abs() < 1e-12);
        }
        assert_eq!(&a.values[4..], &[0.0; 4]);
        assert_eq!(a.zero_std, vec![false, true]);
        let b = advantages(&[1.0, 0.0, 2.0, 2.0], 2, ScaleRewards::Batch);
        let s = std(&[1.0, 0.0, 2.0, 2.0]) + 1e-4;
        assert!((b.values[0] - 0.5 / s).abs() < 1e-12);
        assert_eq!(b.zero_std, vec![false, true]);
        let c = advantages(&[1.0, 0.0], 2, ScaleRewards::None);
        assert_eq!(c.values, vec![0.5, -0.5]);
    }

    #[test]
    fn row_weights_normalize_like_trl() {
        let lens = [2, 4, 0];
        assert_eq!(
            row_weights(LossType::Grpo, &lens, 8),
            vec![1.0 / 6.0, 1.0 / 12.0, 1.0 / 3.0]
        );
        assert_eq!(row_weights(LossType::DrGrpo, &lens, 8), vec![1.0 / 24.0; 3]);
        assert_eq!(row_weights(LossType::Dapo, &lens, 8), vec![1.0 / 6.0; 3]);
    }

    /// The loss and its gradient with respect to the log-probabilities on a case worked by hand:
    /// two completions of 2 tokens, one ratio inside the clip range, one above it, one below.
    #[test]
    fn loss_and_gradient_by_hand() {
        let device = Device::flex().autodiff();
        let old = [0.0f32, -1.0, -2.0, -0.5];
        // ratios: e^0.1 (inside), e^0.5 (above 1.28), e^-0.5 (below 0.8), e^0 = 1
        let now = [0.1f32, -0.5, -2.5, -0.5];
        let mask = [1.0f32; 4];
        let adv = [2.0f64, -1.0];
        for loss_type in [LossType::Grpo, LossType::DrGrpo, LossType::Dapo] {
            let weights = row_weights(loss_type, &[2, 2], 3);
            let c = cfg(0.0);
            let logp = Tensor::<2>::from_data(TensorData::new(now.to_vec(), [2, 2]), &device)
                .require_grad();
            let rows = PolicyRows {
                rows: 2,
                seq: 2,
                mask: &mask,
                old: &old,
                reference: None,
                advantages: &adv,
                weights: &weights,
            };
            let (total, stats) = loss(&c, logp.clone(), &host(logp.clone()), &rows);
            let r = |i: usize| ((now[i] - old[i]) as f64).exp();
            // Row 0 (A = 2): token 0 unclipped, token 1 clipped at 1.28 (constant).
            // Row 1 (A = −1): token 0's ratio e^−0.5 < 0.8: min(−r, −0.8) = −0.8 (clipped,
            // constant); token 1 ratio 1.
            let want = -weights[0] * (2.0 * r(0) + 2.0 * 1.28) - weights[1] * (-0.8 - r(3));
            assert!((stats.loss - want).abs() < 1e-6, "{loss_type:?}");
            assert_eq!((stats.clipped_high, stats.clipped_low), (1, 1));
            let g = total.backward();
            let grad: Vec<f32> = logp
                .grad(&g)
                .unwrap()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let want_grad = [-2.0 * weights[0] * r(0), 0.0, 0.0, 1.0 * weights[1] * r(3)];
            for (g, w) in grad.iter().zip(want_grad) {
                assert!((*g as f64 - w).abs() < 1e-6, "{loss_type:?}: {grad:?}");
            }
        }
    }

    /// Skipping a zero-advantage row (what the trainer does with groups whose rewards are all
    /// equal, when β = 0) changes neither the loss nor the other rows' gradients: the
    /// normalizers are the batch's, computed before.
    #[test]
    fn skipping_rows_without_signal_is_exact() {
        let device = Device::flex().autodiff();
        let c = cfg(0.0);
        let old = [-0.5f32, -1.0, -0.7, -0.2];
        let now = [-0.4f32, -1.1, -0.9, -0.1];
        let weights = row_weights(LossType::Dapo, &[2, 2], 4);
        let run = |rows: usize| {
            let logp = Tensor::<2>::from_data(
                TensorData::new(now[..rows * 2].to_vec(), [rows, 2]),
                &device,
            )
            .require_grad();
            let r = PolicyRows {
                rows,
                seq: 2,
                mask: &[1.0; 4][..rows * 2],
                old: &old[..rows * 2],
                reference: None,
                advantages: &[1.5, 0.0][..rows],
                weights: &weights[..rows],
            };
            let (total, stats) = loss(&c, logp.clone(), &host(logp.clone()), &r);
            let g: Vec<f32> = logp
                .grad(&total.backward())
                .unwrap()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            (stats.loss, g)
        };
        let (with, g_with) = run(2);
        let (without, g_without) = run(1);
        assert_eq!(with, without);
        assert_eq!(&g_with[..2], &g_without[..]);
        assert_eq!(&g_with[2..], &[0.0, 0.0]);
    }

    /// k3 KL: 0 where the policy equals the reference, and its gradient −exp(ref − logp) + 1.
    #[test]
    fn kl_term() {
        let device = Device::flex().autodiff();
        let now = [-1.0f32, -2.0];
        let reference = [-1.0f32, -1.5];
        let c = cfg(0.5);
        let logp =
            Tensor::<2>::from_data(TensorData::new(now.to_vec(), [1, 2]), &device).require_grad();
        let rows = PolicyRows {
            rows: 1,
            seq: 2,
            mask: &[1.0, 1.0],
            old: &now,
            reference: Some(&reference),
            advantages: &[0.0],
            weights: &[0.5],
        };
        let (total, stats) = loss(&c, logp.clone(), &host(logp.clone()), &rows);
        let d = 0.5f64;
        let kl1 = d.exp() - d - 1.0;
        assert!((stats.kl_sum - kl1).abs() < 1e-6);
        assert!((stats.loss - 0.5 * 0.5 * kl1).abs() < 1e-6);
        let g: Vec<f32> = logp
            .grad(&total.backward())
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(g[0].abs() < 1e-7, "no KL gradient where policy = reference");
        assert!((g[1] as f64 - 0.25 * (1.0 - d.exp())).abs() < 1e-6);
    }
}
