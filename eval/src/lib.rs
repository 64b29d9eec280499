//! Execution-based evaluation: generated code run in a layered sandbox, verdicts decided outside
//! the sample's process where possible, and the unbiased pass@k estimator.

pub mod args;
pub mod convert;
pub mod evaluate;
pub mod generate;
pub mod pass_at_k;
pub mod pyvalue;
pub mod samples;
pub mod sandbox;
