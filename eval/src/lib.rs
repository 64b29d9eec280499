//! Execution-based evaluation: generated code run in a layered sandbox, verdicts decided outside
//! the sample's process where possible, and the unbiased pass@k estimator. (Arrives with the
//! evaluator issue.)
