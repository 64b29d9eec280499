//! DPO (Rafailov et al. 2023) with TRL's default sigmoid loss:
//!
//! `loss = −log σ(β · ((log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))))`
//!
//! averaged over pairs, where `log π(·)` is a completion's summed token log-probability given
//! its prompt. Pairs come from a JSONL file or from execution: of a prompt's sampled
//! completions, the best-rewarded passing one is chosen and the worst-rewarded failing one
//! rejected.

use super::rollout;
use super::trainer::RlTrainer;
use crate::TrainError;
use crate::dist::{optimizer_step, scaled};
use crate::optim::{GradAccumulator, lr_at};
use anvil_models::{Llama, TokenBatch};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Tensor, TensorData};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// One preference pair, as text.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Pair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Reads `prompt, chosen, rejected` lines; a line that does not parse or has an empty side is an
/// error naming the file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, TrainError> {
    let at =
        |line: usize, msg: String| TrainError::Recipe(format!("{}:{line}: {msg}", path.display()));
    let file = std::fs::File::open(path)
        .map_err(|e| TrainError::Recipe(format!("{}: {e}", path.display())))?;
    let mut pairs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| at(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Pair = serde_json::from_str(&line).map_err(|e| {
            at(
                i + 1,
                format!("not a {{prompt, chosen, rejected}} object: {e}"),
            )
        })?;
        for (side, text) in [
            ("prompt", &p.prompt),
            ("chosen", &p.chosen),
            ("rejected", &p.rejected),
        ] {
            if side != "prompt" && text.trim().is_empty() {
                return Err(at(i + 1, format!("`{side}` is empty")));
            }
        }
        if p.chosen == p.rejected {
            return Err(at(
                i + 1,
                "`chosen` and `rejected` are the same text".into(),
            ));
        }
        pairs.push(p);
    }
    if pairs.is_empty() {
        return Err(TrainError::Recipe(format!("{}: no pairs", path.display())));
    }
    Ok(pairs)
}

/// From one prompt's samples (`passed`, `reward` each): the chosen (best-rewarded passing) and
/// rejected (worst-rewarded failing) sample's indices, or `None` without both kinds.
pub fn execution_pair(samples: &[(bool, f64)]) -> Option<(usize, usize)> {
    let best_pass = (0..samples.len())
        .filter(|&i| samples[i].0)
        .max_by(|&a, &b| samples[a].1.total_cmp(&samples[b].1))?;
    let worst_fail = (0..samples.len())
        .filter(|&i| !samples[i].0)
        .min_by(|&a, &b| samples[a].1.total_cmp(&samples[b].1))?;
    Some((best_pass, worst_fail))
}

/// Pair statistics, summed (divide by `pairs`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DpoStats {
    pub pairs: usize,
    pub loss: f64,
    /// `β·(log π(c) − log π_ref(c))`, TRL's `rewards/chosen`.
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Pairs whose chosen reward is above the rejected one.
    pub correct: usize,
}

impl DpoStats {
    pub fn add(&mut self, o: &DpoStats) {
        self.pairs += o.pairs;
        self.loss += o.loss;
        self.chosen_reward += o.chosen_reward;
        self.rejected_reward += o.rejected_reward;
        self.correct += o.correct;
    }
}

/// The sigmoid DPO loss of a micro-batch of pairs, divided by `total_pairs` (the step's, so
/// micro-batches add up to the mean), from the policy's sequence log-probabilities (chosen and
/// rejected, `[pairs]`, differentiable) and the reference's.
pub fn loss(
    beta: f64,
    chosen: Tensor<1>,
    rejected: Tensor<1>,
    ref_chosen: &[f32],
    ref_rejected: &[f32],
    total_pairs: usize,
) -> (Tensor<1>, DpoStats) {
    let n = ref_chosen.len();
    let device = chosen.device();
    let host = |t: &Tensor<1>| -> Vec<f32> {
        t.clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 log-probabilities")
    };
    let (pc, pr) = (host(&chosen), host(&rejected));
    let mut stats = DpoStats {
        pairs: n,
        ..DpoStats::default()
    };
    for i in 0..n {
        let c = beta * (pc[i] as f64 - ref_chosen[i] as f64);
        let r = beta * (pr[i] as f64 - ref_rejected[i] as f64);
        let z = c - r;
        // −log σ(z) = log(1 + e^−z), computed stably.
        stats.loss += (-z).max(0.0) + (-z.abs()).exp().ln_1p();
        stats.chosen_reward += c;
        stats.rejected_reward += r;
        stats.correct += usize::from(c > r);
    }
    stats.loss /= total_pairs.max(1) as f64;
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
    let logits = ((chosen - t(ref_chosen)) - (rejected - t(ref_rejected))) * beta;
    let total = log_sigmoid(logits).sum().neg() / total_pairs.max(1) as f64;
    (total, stats)
}

// ---- The step ------------------------------------------------------------------------------------

impl RlTrainer {
    /// One DPO step: this step's pairs (from the file, or from execution), the reference's and
    /// the policy's sequence log-probabilities, the sigmoid loss, one update.
    pub(super) fn dpo_step(
        &mut self,
        model: Llama,
    ) -> Result<(Llama, Vec<(String, f64)>), TrainError> {
        let cfg = self.cfg.clone();
        let mut metrics = Vec::new();
        let eos = self.eos[0];
        // Each pair as (prompt, chosen, rejected) ids, the completions ending in EOS.
        let mut pairs: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = Vec::new();
        if self.pairs.is_empty() {
            let (rollouts, verdicts, rewards, _) =
                self.rollouts(&model, cfg.dpo_samples, &mut metrics)?;
            for start in (0..rollouts.len()).step_by(cfg.dpo_samples) {
                let group: Vec<(bool, f64)> = (start..start + cfg.dpo_samples)
                    .map(|i| (verdicts[i].passed, rewards[i].total))
                    .collect();
                if let Some((c, r)) = execution_pair(&group) {
                    let (c, r) = (&rollouts[start + c], &rollouts[start + r]);
                    pairs.push((c.prompt.clone(), c.tokens.clone(), r.tokens.clone()));
                }
            }
        } else {
            let g = self.generator(&model);
            let enc = |s: &str| {
                g.encode(s)
                    .map_err(|e| TrainError::Recipe(format!("rl.pairs_file: {e}")))
            };
            let all = self.stream.next_rows(cfg.prompts_per_step);
            for &i in &all[self.world.block(all.len())] {
                let p = &self.pairs[i];
                let prompt =
                    anvil_eval::generate::encode_prompt(&g, &p.prompt, cfg.max_completion_tokens)
                        .map_err(|e| TrainError::Recipe(format!("rl.pairs_file: {e}")))?
                        .0;
                let room = g.context_length().saturating_sub(prompt.len() + 1);
                let side = |s: &str| -> Result<Vec<u32>, TrainError> {
                    let mut ids = enc(s)?;
                    ids.truncate(room);
                    ids.push(eos);
                    Ok(ids)
                };
                pairs.push((prompt.clone(), side(&p.chosen)?, side(&p.rejected)?));
            }
        }
        let t0 = Instant::now();
        // The loss is the mean over every rank's pairs.
        let total_pairs = self.world.sum(&[pairs.len() as f64])[0] as usize;
        metrics.push(("rl/pairs".into(), total_pairs as f64));
        let lr = lr_at(
            self.state.step,
            self.recipe.optim.lr,
            &self.recipe.schedule,
            self.recipe.train.max_steps,
        );
        let mut model = model;
        let mut stats = DpoStats::default();
        let mut grad_norm = 0.0;
        let mut step_tokens = 0u64;
        // Every rank steps together, also one without pairs of its own this step.
        if total_pairs > 0 {
            // Chosen rows first, then rejected, per micro-batch of pairs.
            let per = (cfg.micro_batch / 2).max(1);
            let batches: Vec<TokenBatch> = pairs
                .chunks(per)
                .map(|c| {
                    let mut rows: Vec<(&[u32], &[u32])> = c
                        .iter()
                        .map(|(p, ch, _)| (p.as_slice(), ch.as_slice()))
                        .collect();
                    rows.extend(c.iter().map(|(p, _, rj)| (p.as_slice(), rj.as_slice())));
                    rollout::batch(&rows, eos)
                })
                .collect();
            let refs: Vec<Vec<f32>> = batches
                .iter()
                .map(|b| {
                    let tok = self.reference_logprobs(&model, b, 1.0);
                    tok.chunks(b.seq_len)
                        .map(|r| r.iter().sum::<f32>())
                        .collect()
                })
                .collect();
            let mut grads = GradAccumulator::default();
            for (b, reference) in batches.iter().zip(&refs) {
                let n = b.batch / 2;
                let seq = model
                    .token_logprobs(b, 1.0, false)
                    .logprobs
                    .sum_dim(1)
                    .reshape([b.batch]);
                let (chosen, rejected) = (seq.clone().narrow(0, 0, n), seq.narrow(0, n, n));
                let (loss, s) = loss(
                    cfg.beta,
                    chosen,
                    rejected,
                    &reference[..n],
                    &reference[n..],
                    total_pairs,
                );
                grads.add(
                    &model,
                    &scaled(loss, self.state.loss_scaler.as_ref()).backward(),
                );
                stats.add(&s);
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
            let s = self.world.sum(&[
                step_tokens as f64,
                stats.pairs as f64,
                stats.loss,
                stats.chosen_reward,
                stats.rejected_reward,
                stats.correct as f64,
            ]);
            step_tokens = s[0] as u64;
            stats = DpoStats {
                pairs: s[1] as usize,
                loss: s[2],
                chosen_reward: s[3],
                rejected_reward: s[4],
                correct: s[5] as usize,
            };
        }
        self.tokens += step_tokens;
        self.end_step();
        if stats.pairs > 0 {
            let n = stats.pairs as f64;
            metrics.extend([
                ("rl/loss".into(), stats.loss),
                ("rl/rewards_chosen".into(), stats.chosen_reward / n),
                ("rl/rewards_rejected".into(), stats.rejected_reward / n),
                (
                    "rl/rewards_margin".into(),
                    (stats.chosen_reward - stats.rejected_reward) / n,
                ),
                ("rl/rewards_accuracy".into(), stats.correct as f64 / n),
                ("rl/grad_norm".into(), grad_norm),
            ]);
        }
        metrics.extend([
            ("train/lr".into(), lr),
            ("rl/update_s".into(), t0.elapsed().as_secs_f64()),
        ]);
        self.bar.set_message(format!("{total_pairs} pairs"));
        Ok((model, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// β = 0.1; pair 1: policy gained 2 nats on chosen, lost 1 on rejected → z = 0.3;
    /// pair 2: the opposite → z = −0.3. Loss = (log(1+e^−0.3) + log(1+e^0.3)) / 2, and
    /// d loss / d log π(c_i) = −β·σ(−z_i) / 2.
    #[test]
    fn sigmoid_loss_by_hand() {
        let device = Device::flex().autodiff();
        let t =
            |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [2]), &device).require_grad();
        let (chosen, rejected) = (t(vec![-3.0, -6.0]), t(vec![-7.0, -4.0]));
        let (total, stats) = loss(
            0.1,
            chosen.clone(),
            rejected.clone(),
            &[-5.0, -5.0],
            &[-6.0, -6.0],
            2,
        );
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = (sp(-0.3) + sp(0.3)) / 2.0;
        assert!((stats.loss - want).abs() < 1e-9);
        let value = total.clone().into_scalar::<f32>() as f64;
        assert!((value - want).abs() < 1e-5);
        assert_eq!(stats.correct, 1);
        assert!((stats.chosen_reward - (0.2 + -0.1)).abs() < 1e-9);
        let g = total.backward();
        let gc: Vec<f32> = chosen
            .grad(&g)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let gr: Vec<f32> = rejected
            .grad(&g)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        for (i, z) in [0.3f64, -0.3].into_iter().enumerate() {
            let want = -0.1 * sig(-z) / 2.0;
            assert!((gc[i] as f64 - want).abs() < 1e-6, "{gc:?}");
            assert!((gr[i] as f64 + want).abs() < 1e-6, "{gr:?}");
        }
    }

    #[test]
    fn execution_pairs_need_a_pass_and_a_failure() {
        assert_eq!(
            execution_pair(&[(true, 0.9), (false, 0.2), (true, 1.0), (false, 0.1)]),
            Some((2, 3))
        );
        assert_eq!(execution_pair(&[(true, 0.9), (true, 0.2)]), None);
        assert_eq!(execution_pair(&[(false, 0.9)]), None);
    }

    #[test]
    fn pairs_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"  \"}\n",
        )
        .unwrap();
        let e = read_pairs(&path).unwrap_err().to_string();
        assert!(e.ends_with("pairs.jsonl:2: `rejected` is empty"), "{e}");
        std::fs::write(&path, "{\"prompt\":\"a\"}\n").unwrap();
        let e = read_pairs(&path).unwrap_err().to_string();
        assert!(
            e.contains("pairs.jsonl:1: not a {prompt, chosen, rejected} object"),
            "{e}"
        );
    }
}
