//! Reinforcement learning from execution feedback: GRPO and DPO against the composite reward,
//! in one process — rollouts from the KV-cached batch generator on the policy's own weights,
//! tests in the sandbox's long-lived fork servers, the static terms in-process (docs/rl.md).
//!
//! - [`config`]: the recipe's `[rl]` and `[reward]` sections.
//! - [`grpo`] and [`dpo`]: each algorithm's loss, as TRL defines it, and its step.
//! - [`rollout`]: sampling, scoring, and the training rows built from rollouts.
//! - [`trainer`]: setup, and the cadence (log, held-out pass@1, checkpoint) around the steps.

pub mod config;
pub mod dpo;
pub mod grpo;
pub mod rollout;
pub mod trainer;

pub use config::{Algorithm, LossType, Pairs, RewardConfig, RlConfig, ScaleRewards};
pub use trainer::run;
