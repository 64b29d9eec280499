//! Rollouts: completions of a batch of problems sampled from the current policy (all prompts
//! and all their samples decoded as one KV-cached batch), scored by running their tests in the
//! sandbox and by the composite reward, and turned into training rows (prompt + completion, the
//! loss on the completion only).

use super::config::RlConfig;
use crate::dist::World;
use anvil_data::problems::Problem;
use anvil_eval::evaluate::Verdict;
use anvil_eval::reward::{self, CompositeReward, Reward, RewardError};
use anvil_eval::scorer::Scorer;
use anvil_infer::{Completion, FinishReason, GenerateParams, Generator, InferError, Timing};
use anvil_models::TokenBatch;

/// One sampled completion of one problem.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Index of its problem in the trainer's problem list.
    pub problem: usize,
    /// The prompt as the model read it (without the tokens token healing backed off).
    pub prompt: Vec<u32>,
    pub completion: Completion,
    /// What the loss is on: the generated tokens, and the end-of-sequence token when the model
    /// chose to stop (stopping is learned too).
    pub tokens: Vec<u32>,
}

impl Rollout {
    /// Cut by `max_completion_tokens` (or the context).
    pub fn truncated(&self) -> bool {
        self.completion.finish_reason == FinishReason::Length
    }
}

/// Per completion of a step, every rank's in rank order (in one process, its own): what the
/// advantages, the loss normalizers and the metrics need of the whole batch.
#[derive(Debug, Clone, Default)]
pub struct StepScores {
    pub totals: Vec<f64>,
    pub passed: Vec<bool>,
    /// Tokens the loss is on.
    pub tokens: Vec<usize>,
    pub truncated: Vec<bool>,
    /// Per reward term (in the reward's order), per completion.
    pub terms: Vec<Vec<f64>>,
    /// Index of this rank's first completion.
    pub offset: usize,
}

impl StepScores {
    /// This rank's scored rollouts, put together with every other rank's (each rank has the
    /// same number: `rl.prompts_per_step` is a multiple of the ranks).
    pub fn gather(
        world: &World,
        rollouts: &[Rollout],
        verdicts: &[Verdict],
        rewards: &[Reward],
        terms: &[&str],
    ) -> StepScores {
        let width = 4 + terms.len();
        let mut mine = Vec::with_capacity(rollouts.len() * width);
        for ((r, v), w) in rollouts.iter().zip(verdicts).zip(rewards) {
            mine.extend([
                w.total,
                f64::from(u8::from(v.passed)),
                r.tokens.len() as f64,
                f64::from(u8::from(r.truncated())),
            ]);
            mine.extend(
                terms
                    .iter()
                    .map(|t| w.components.get(*t).copied().unwrap_or(0.0)),
            );
        }
        let mut s = StepScores {
            terms: vec![Vec::new(); terms.len()],
            offset: world.rank() * rollouts.len(),
            ..StepScores::default()
        };
        for rank in world.all_gather(&mine) {
            for row in rank.chunks(width) {
                s.totals.push(row[0]);
                s.passed.push(row[1] > 0.0);
                s.tokens.push(row[2] as usize);
                s.truncated.push(row[3] > 0.0);
                for (t, v) in s.terms.iter_mut().zip(&row[4..]) {
                    t.push(*v);
                }
            }
        }
        s
    }
}

/// Sampling parameters of a rollout (`temperature = None`: greedy, for held-out evaluation).
pub fn params(cfg: &RlConfig, n: usize, temperature: Option<f32>, healing: bool) -> GenerateParams {
    let mut p = GenerateParams {
        max_new_tokens: cfg.max_completion_tokens,
        n,
        stop: cfg.stop.clone(),
        token_healing: healing,
        ..GenerateParams::default()
    };
    p.sampling.temperature = temperature.unwrap_or(0.0);
    if temperature.is_some() {
        p.sampling.top_p = cfg.top_p;
        p.sampling.top_k = cfg.top_k;
    }
    p
}

/// `params.n` completions of each of `problems` (indices into `all`), prompt `i` sampling with
/// `seeds[i]`; rollouts come grouped by problem, in order.
pub fn sample(
    g: &Generator,
    all: &[Problem],
    problems: &[usize],
    seeds: &[u64],
    params: &GenerateParams,
) -> Result<(Vec<Rollout>, Timing), InferError> {
    let mut prompts = Vec::with_capacity(problems.len());
    for &p in problems {
        prompts
            .push(anvil_eval::generate::encode_prompt(g, &all[p].prompt, params.max_new_tokens)?.0);
    }
    let (outs, timing) = g.generate_batch(&prompts, seeds, params, |_, _| {})?;
    let eos = g.eos[0];
    let mut rollouts = Vec::with_capacity(problems.len() * params.n);
    for ((&p, prompt), completions) in problems.iter().zip(&prompts).zip(outs) {
        for c in completions {
            let read = prompt[..prompt.len() - c.healed_tokens].to_vec();
            let mut tokens = c.token_ids.clone();
            if c.finish_reason == FinishReason::Eos {
                tokens.push(eos);
            }
            rollouts.push(Rollout {
                problem: p,
                prompt: read,
                completion: c,
                tokens,
            });
        }
    }
    Ok((rollouts, timing))
}

/// Each rollout's verdict (its tests, in the sandbox) and reward.
pub fn score(
    scorer: &Scorer,
    reward: &CompositeReward,
    all: &[Problem],
    rollouts: &[Rollout],
) -> Result<(Vec<Verdict>, Vec<Reward>), RewardError> {
    let pairs: Vec<(&Problem, &str)> = rollouts
        .iter()
        .map(|r| (&all[r.problem], r.completion.text.as_str()))
        .collect();
    let verdicts = scorer.score(&pairs)?;
    let batch: Vec<reward::Completion> = pairs
        .iter()
        .zip(&verdicts)
        .map(|((p, text), v)| reward::Completion::new(p, text).with_verdict(v.clone()))
        .collect();
    let rewards = reward.score(&batch)?;
    Ok((verdicts, rewards))
}

/// Rows `prompt + tokens`, right-padded to the longest, the loss on `tokens` only. Padding is a
/// segment of its own (id 0) that no token attends to or predicts.
pub fn batch(rows: &[(&[u32], &[u32])], pad: u32) -> TokenBatch {
    let width = rows
        .iter()
        .map(|(p, c)| p.len() + c.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let n = rows.len() * width;
    let mut input_ids = Vec::with_capacity(n);
    let mut segment_ids = Vec::with_capacity(n);
    let mut loss_mask = Vec::with_capacity(n);
    for (prompt, completion) in rows {
        let len = prompt.len() + completion.len();
        input_ids.extend_from_slice(prompt);
        input_ids.extend_from_slice(completion);
        input_ids.extend(std::iter::repeat_n(pad, width - len));
        segment_ids.extend(std::iter::repeat_n(1u16, len));
        segment_ids.extend(std::iter::repeat_n(0u16, width - len));
        loss_mask.extend(std::iter::repeat_n(false, prompt.len()));
        loss_mask.extend(std::iter::repeat_n(true, completion.len()));
        loss_mask.extend(std::iter::repeat_n(false, width - len));
    }
    TokenBatch {
        input_ids,
        segment_ids: Some(segment_ids),
        loss_mask: Some(loss_mask),
        batch: rows.len(),
        seq_len: width,
        tree: None,
        position_targets: None,
    }
}

/// `batch`'s targets as a 0/1 mask, `[rows · seq]`: where the log-probabilities are.
pub fn target_mask(batch: &TokenBatch) -> Vec<f32> {
    batch.targets().1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_predict_exactly_the_completion() {
        let b = batch(&[(&[1, 2, 3], &[4, 5]), (&[7], &[8])], 0);
        assert_eq!(b.seq_len, 5);
        assert_eq!(b.input_ids, vec![1, 2, 3, 4, 5, 7, 8, 0, 0, 0]);
        let (targets, weights, n) = b.targets();
        // Row 0: positions 2 and 3 predict 4 and 5; row 1: position 0 predicts 8.
        assert_eq!(n, 3);
        assert_eq!(weights, vec![0., 0., 1., 1., 0., 1., 0., 0., 0., 0.]);
        assert_eq!((targets[2], targets[3], targets[5]), (4, 5, 8));
    }
}
