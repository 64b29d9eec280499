//! Execution-based evaluation: generated code run in a layered sandbox, verdicts decided outside
//! the sample's process where possible, the unbiased pass@k estimator, and the composite reward
//! (tests, security, quality, license) that RL training optimizes.

pub mod args;
mod cases;
pub mod convert;
pub mod evaluate;
pub mod generate;
pub mod pass_at_k;
pub mod pyvalue;
pub mod reward;
pub mod samples;
pub mod sandbox;
pub mod scorer;

/// The static analyzers behind the reward's security, quality and license terms, for callers
/// that depend on this crate only (the `anvil` CLI's `reward analyze`).
pub use anvil_analyze as analyze;
