//! The composite reward for RL on code (docs/reward.md):
//!
//! `R = 0.6·test pass rate + 0.15·(1 − security risk) + 0.15·static quality + 0.1·license`
//!
//! in TRL's shape: a list of reward functions ([`RewardFn`]), each giving one value per
//! completion, combined with weights as `Σ w·r` (not normalized: the default weights sum to 1,
//! so with every term in [0, 1] the total is too). Users add their own terms next to the
//! built-ins [`TestPassRate`], [`Security`], [`Quality`] and [`License`].
//!
//! The static terms analyze `prompt + completion`, the function as it will run: a completion
//! alone is a function body without its `def`, which neither parses nor shows what it imports.
//! The prompt is the same for every completion of a problem, so it shifts all of them alike.

use crate::evaluate::{EvalError, Verdict};
use crate::samples::Sample;
use crate::scorer::Scorer;
use anvil_analyze::license::{CorpusIndex, LicenseError, LicensePolicy};
use anvil_analyze::{Finding, Source, SourceError, license, quality, security};
use anvil_data::problems::Problem;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

/// Weights of the built-in terms, in [`TERMS`] order.
pub const DEFAULT_WEIGHTS: [f64; 4] = [0.6, 0.15, 0.15, 0.1];
/// Names of the built-in terms, in the order `--weights` gives their weights.
pub const TERMS: [&str; 4] = ["test_pass_rate", "security", "quality", "license"];
/// Bins of [`RewardSummary::total_histogram`].
pub const HISTOGRAM_BINS: usize = 10;

pub fn default_weights() -> [f64; 4] {
    DEFAULT_WEIGHTS
}

#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// Bad weights; the message says which and why.
    #[error("{0}")]
    Weights(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    License(#[from] LicenseError),
    #[error("reward term `{term}`: {msg}")]
    Term { term: String, msg: String },
}

/// One completion to score, with its problem. The static terms share one parse of its code.
pub struct Completion<'a> {
    pub problem: &'a Problem,
    pub completion: &'a str,
    /// Its verdict when the tests already ran (`eval pass-at-k --reward`): [`TestPassRate`]
    /// uses it instead of running them again.
    pub verdict: Option<Verdict>,
    code: String,
    source: OnceLock<Result<Source, SourceError>>,
}

impl<'a> Completion<'a> {
    pub fn new(problem: &'a Problem, completion: &'a str) -> Completion<'a> {
        Completion {
            problem,
            completion,
            verdict: None,
            code: format!("{}{}", problem.prompt, completion),
            source: OnceLock::new(),
        }
    }

    pub fn with_verdict(self, verdict: Verdict) -> Completion<'a> {
        Completion {
            verdict: Some(verdict),
            ..self
        }
    }

    /// What the static terms analyze: `prompt + completion`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// [`Self::code`] parsed as Python, once, whichever term asks first.
    pub fn source(&self) -> Result<&Source, &SourceError> {
        self.source
            .get_or_init(|| Source::python(self.code.as_bytes()))
            .as_ref()
    }
}

/// A term's value for one completion, with what it found and anything worth inspecting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scored {
    pub value: f64,
    pub findings: Vec<Finding>,
    pub detail: Option<Value>,
}

impl From<f64> for Scored {
    fn from(value: f64) -> Scored {
        Scored {
            value,
            ..Scored::default()
        }
    }
}

/// One term of the reward: a value per completion of the batch, in order. Implement
/// [`Self::score`]; terms that have findings or details to show also implement
/// [`Self::score_detailed`].
pub trait RewardFn: Send + Sync {
    /// The term's name in outputs (`test_pass_rate`, `security`, …): unique within a reward.
    fn name(&self) -> &str;

    fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError>;

    fn score_detailed(&self, batch: &[Completion]) -> Result<Vec<Scored>, RewardError> {
        Ok(self.score(batch)?.into_iter().map(Scored::from).collect())
    }
}

fn values(scored: Vec<Scored>) -> Vec<f64> {
    scored.into_iter().map(|s| s.value).collect()
}

/// The share of a problem's test cases the completion passes ([`Verdict::pass_rate`]): partial
/// credit where the problem's check converted into cases, 1 or 0 where it runs as a whole.
pub struct TestPassRate {
    scorer: Option<Arc<Scorer>>,
}

impl TestPassRate {
    /// Runs the tests of completions without a verdict on `scorer`.
    pub fn new(scorer: Arc<Scorer>) -> TestPassRate {
        TestPassRate {
            scorer: Some(scorer),
        }
    }

    /// Only reads the verdicts the completions carry; one without is an error.
    pub fn from_verdicts() -> TestPassRate {
        TestPassRate { scorer: None }
    }
}

impl RewardFn for TestPassRate {
    fn name(&self) -> &str {
        TERMS[0]
    }

    fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
        self.score_detailed(batch).map(values)
    }

    fn score_detailed(&self, batch: &[Completion]) -> Result<Vec<Scored>, RewardError> {
        let todo: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].verdict.is_none())
            .collect();
        let mut fresh = Vec::new();
        if !todo.is_empty() {
            let scorer = self.scorer.as_ref().ok_or_else(|| RewardError::Term {
                term: self.name().into(),
                msg: "a completion has no verdict, and the term has no scorer to run its tests"
                    .into(),
            })?;
            let pairs: Vec<(&Problem, &str)> = todo
                .iter()
                .map(|&i| (batch[i].problem, batch[i].completion))
                .collect();
            fresh = scorer.score(&pairs)?;
        }
        let mut fresh = fresh.into_iter();
        Ok(batch
            .iter()
            .map(|c| {
                let v = match &c.verdict {
                    Some(v) => v.clone(),
                    None => fresh.next().expect("one verdict per completion scored"),
                };
                Scored {
                    value: v.pass_rate,
                    findings: Vec::new(),
                    detail: Some(json!({
                        "passed": v.passed,
                        "result": v.result,
                        "cases_passed": v.cases_passed,
                        "cases_total": v.cases_total,
                        "partial": v.partial,
                        "check": v.mode.name(),
                    })),
                }
            })
            .collect())
    }
}

/// Runs `f` on every completion's parsed code, in parallel. Code that cannot be analyzed at all
/// (NUL bytes, over the size or nesting limits) scores 0: a static term must not be raised by
/// making the code unreadable to it. An analyzer that panics scores 0 with the reason, instead of
/// ending a training run.
fn analyzed(batch: &[Completion], f: impl Fn(&Source) -> Scored + Sync) -> Vec<Scored> {
    batch
        .par_iter()
        .map(|c| {
            let fail = |why: String| Scored {
                value: 0.0,
                findings: Vec::new(),
                detail: Some(json!({ "error": why })),
            };
            match c.source() {
                Ok(src) => panic::catch_unwind(AssertUnwindSafe(|| f(src))).unwrap_or_else(|p| {
                    let why = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    fail(format!("internal error: analyzer panicked: {why}"))
                }),
                Err(e) => fail(format!("not analyzed: {e}")),
            }
        })
        .collect()
}

/// `1 − risk` of the Bandit-compatible findings (docs/reward/security.md). Code with syntax
/// errors is analyzed as tree-sitter recovered it.
pub struct Security;

impl RewardFn for Security {
    fn name(&self) -> &str {
        TERMS[1]
    }

    fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
        self.score_detailed(batch).map(values)
    }

    fn score_detailed(&self, batch: &[Completion]) -> Result<Vec<Scored>, RewardError> {
        Ok(analyzed(batch, |src| {
            let findings = security::analyze(src);
            let risk = security::risk(&findings);
            Scored {
                value: 1.0 - risk,
                findings,
                detail: Some(json!({ "risk": risk })),
            }
        }))
    }
}

/// radon's complexity and maintainability and pyflakes' lints as one score
/// (docs/reward/quality.md); 0 for code that does not parse.
pub struct Quality;

impl RewardFn for Quality {
    fn name(&self) -> &str {
        TERMS[2]
    }

    fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
        self.score_detailed(batch).map(values)
    }

    fn score_detailed(&self, batch: &[Completion]) -> Result<Vec<Scored>, RewardError> {
        Ok(analyzed(batch, |src| {
            let report = quality::analyze(src);
            let parses = !src.has_errors;
            let functions: Vec<Value> = report
                .blocks
                .iter()
                .map(|b| json!({"name": b.name, "complexity": b.complexity, "rank": b.rank.to_string()}))
                .collect();
            Scored {
                value: quality::score(&report, parses),
                detail: Some(json!({
                    "parses": parses,
                    "mi": report.mi,
                    "mi_rank": report.mi_rank.to_string(),
                    "functions": functions,
                })),
                findings: report.lints,
            }
        }))
    }
}

/// License compliance against a policy, and against the training corpus when an index is given
/// (docs/reward/license.md).
pub struct License {
    policy: LicensePolicy,
    index: Option<Arc<CorpusIndex>>,
}

impl License {
    /// Refuses a policy that does not validate.
    pub fn new(
        policy: LicensePolicy,
        index: Option<Arc<CorpusIndex>>,
    ) -> Result<License, RewardError> {
        policy.validate()?;
        Ok(License { policy, index })
    }
}

impl RewardFn for License {
    fn name(&self) -> &str {
        TERMS[3]
    }

    fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
        self.score_detailed(batch).map(values)
    }

    fn score_detailed(&self, batch: &[Completion]) -> Result<Vec<Scored>, RewardError> {
        Ok(analyzed(batch, |src| {
            let report = license::check(src, &self.policy, self.index.as_deref());
            let mut detail = serde_json::Map::new();
            if !report.unknown_packages.is_empty() {
                detail.insert("unknown_packages".into(), json!(report.unknown_packages));
            }
            if !report.matches.is_empty() {
                detail.insert("matches".into(), json!(report.matches));
            }
            Scored {
                value: report.score,
                findings: report.findings,
                detail: (!detail.is_empty()).then_some(Value::Object(detail)),
            }
        }))
    }
}

/// A finding with the term that reported it (`{"term": "security", "rule": "B307", …}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermFinding {
    pub term: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// The reward of one completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reward {
    /// Every term's value, by name.
    pub components: BTreeMap<String, f64>,
    /// `Σ weight · value` over the terms.
    pub total: f64,
    /// Every term's findings, in term order.
    pub findings: Vec<TermFinding>,
    /// What each term had to say beyond its value (the test verdict, the security risk, the
    /// quality metrics, unknown packages…), by term name.
    pub details: BTreeMap<String, Value>,
}

/// One line of `<samples>_rewards.jsonl`.
#[derive(Debug, Serialize)]
pub struct RewardRow<'a> {
    pub task_id: &'a str,
    /// The sample's rank among its task's samples, from 0, in file order.
    pub completion_index: usize,
    /// 1-based line in the samples file.
    pub line: usize,
    #[serde(flatten)]
    pub reward: &'a Reward,
}

/// The rewards file's rows for `samples` and their `rewards`, in order.
pub fn rows<'a>(samples: &'a [Sample], rewards: &'a [Reward]) -> Vec<RewardRow<'a>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    samples
        .iter()
        .zip(rewards)
        .map(|(s, reward)| {
            let k = seen.entry(s.task_id.as_str()).or_default();
            let row = RewardRow {
                task_id: &s.task_id,
                completion_index: *k,
                line: s.line,
                reward,
            };
            *k += 1;
            row
        })
        .collect()
}

/// Weights must be finite, non-negative, and not all zero.
pub fn validate_weights(weights: &[f64]) -> Result<(), RewardError> {
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(RewardError::Weights(format!(
            "weight {w}: weights must be finite and at least 0"
        )));
    }
    if weights.iter().sum::<f64>() <= 0.0 {
        return Err(RewardError::Weights(
            "the weights sum to 0: at least one must be positive".into(),
        ));
    }
    Ok(())
}

/// `0.6,0.15,0.15,0.1`: the built-in terms' weights in [`TERMS`] order, validated.
pub fn parse_weights(text: &str) -> Result<[f64; 4], RewardError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() != TERMS.len() {
        return Err(RewardError::Weights(format!(
            "expected {} comma-separated weights ({}), got {}",
            TERMS.len(),
            TERMS.join(", "),
            parts.len()
        )));
    }
    let mut w = [0.0; 4];
    for (slot, part) in w.iter_mut().zip(&parts) {
        *slot = part
            .parse::<f64>()
            .map_err(|_| RewardError::Weights(format!("`{part}` is not a number")))?;
    }
    validate_weights(&w)?;
    Ok(w)
}

/// Weighted terms; see the module docs.
pub struct CompositeReward {
    terms: Vec<(Box<dyn RewardFn>, f64)>,
}

impl CompositeReward {
    /// Refuses bad weights (see [`validate_weights`]), no terms, and two terms with one name.
    pub fn new(terms: Vec<(Box<dyn RewardFn>, f64)>) -> Result<CompositeReward, RewardError> {
        if terms.is_empty() {
            return Err(RewardError::Weights(
                "a reward needs at least one term".into(),
            ));
        }
        let weights: Vec<f64> = terms.iter().map(|(_, w)| *w).collect();
        validate_weights(&weights)?;
        for (i, (t, _)) in terms.iter().enumerate() {
            if terms[..i].iter().any(|(u, _)| u.name() == t.name()) {
                return Err(RewardError::Weights(format!(
                    "two reward terms are named `{}`",
                    t.name()
                )));
            }
        }
        Ok(CompositeReward { terms })
    }

    /// The four built-in terms with `weights` in [`TERMS`] order ([`DEFAULT_WEIGHTS`] for the
    /// issue's reward).
    pub fn standard(
        tests: TestPassRate,
        license: License,
        weights: [f64; 4],
    ) -> Result<CompositeReward, RewardError> {
        CompositeReward::new(vec![
            (Box::new(tests), weights[0]),
            (Box::new(Security), weights[1]),
            (Box::new(Quality), weights[2]),
            (Box::new(license), weights[3]),
        ])
    }

    /// Adds a term (a user's own) with its weight.
    pub fn with(
        mut self,
        term: Box<dyn RewardFn>,
        weight: f64,
    ) -> Result<CompositeReward, RewardError> {
        self.terms.push((term, weight));
        CompositeReward::new(self.terms)
    }

    /// `(name, weight)` of every term, in order.
    pub fn weights(&self) -> Vec<(&str, f64)> {
        self.terms.iter().map(|(t, w)| (t.name(), *w)).collect()
    }

    /// The totals only: what a trainer needs per step.
    pub fn totals(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
        Ok(self.score(batch)?.into_iter().map(|r| r.total).collect())
    }

    /// Every term on the whole batch, the terms in parallel (the tests on the scorer's workers,
    /// the static terms on rayon's pool).
    pub fn score(&self, batch: &[Completion]) -> Result<Vec<Reward>, RewardError> {
        let per_term: Vec<Vec<Scored>> = self
            .terms
            .par_iter()
            .map(|(t, _)| {
                let scored = t.score_detailed(batch)?;
                let bad = |msg: String| RewardError::Term {
                    term: t.name().into(),
                    msg,
                };
                if scored.len() != batch.len() {
                    return Err(bad(format!(
                        "{} values for {} completions",
                        scored.len(),
                        batch.len()
                    )));
                }
                if let Some(s) = scored.iter().find(|s| !s.value.is_finite()) {
                    return Err(bad(format!("value {} is not a finite number", s.value)));
                }
                Ok(scored)
            })
            .collect::<Result<_, RewardError>>()?;
        let mut rewards: Vec<Reward> = (0..batch.len())
            .map(|_| Reward {
                components: BTreeMap::new(),
                total: 0.0,
                findings: Vec::new(),
                details: BTreeMap::new(),
            })
            .collect();
        for ((term, weight), scored) in self.terms.iter().zip(per_term) {
            let name = term.name();
            for (r, s) in rewards.iter_mut().zip(scored) {
                r.components.insert(name.to_string(), s.value);
                r.total += weight * s.value;
                r.findings
                    .extend(s.findings.into_iter().map(|finding| TermFinding {
                        term: name.to_string(),
                        finding,
                    }));
                if let Some(d) = s.detail {
                    r.details.insert(name.to_string(), d);
                }
            }
        }
        Ok(rewards)
    }
}

/// Means and the distribution of the total over a set of rewards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardSummary {
    pub n: usize,
    pub weights: BTreeMap<String, f64>,
    /// Mean of every term's value.
    pub means: BTreeMap<String, f64>,
    pub total_mean: f64,
    /// Minimum, 25th percentile, median, 75th percentile and maximum of the total (linear
    /// interpolation between the nearest ranks, as numpy's default).
    pub total_quartiles: [f64; 5],
    /// Totals in [`HISTOGRAM_BINS`] equal bins over [0, Σ weights] (the last bin closed).
    pub total_histogram: Vec<u64>,
}

pub fn summarize(reward: &CompositeReward, rewards: &[Reward]) -> RewardSummary {
    let n = rewards.len();
    let weights: BTreeMap<String, f64> = reward
        .weights()
        .into_iter()
        .map(|(k, w)| (k.to_string(), w))
        .collect();
    let mut means: BTreeMap<String, f64> = weights.keys().map(|k| (k.clone(), 0.0)).collect();
    for r in rewards {
        for (k, v) in &r.components {
            *means.entry(k.clone()).or_default() += v;
        }
    }
    for m in means.values_mut() {
        *m /= n.max(1) as f64;
    }
    let mut totals: Vec<f64> = rewards.iter().map(|r| r.total).collect();
    totals.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if totals.is_empty() {
            return 0.0;
        }
        let at = q * (totals.len() - 1) as f64;
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        totals[lo] + (totals[hi] - totals[lo]) * (at - lo as f64)
    };
    let top: f64 = weights.values().sum();
    let mut histogram = vec![0u64; HISTOGRAM_BINS];
    for t in &totals {
        let bin = ((t / top) * HISTOGRAM_BINS as f64).floor();
        histogram[(bin.max(0.0) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    RewardSummary {
        n,
        weights,
        means,
        total_mean: totals.iter().sum::<f64>() / n.max(1) as f64,
        total_quartiles: [0.0, 0.25, 0.5, 0.75, 1.0].map(quantile),
        total_histogram: histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            task_id: "T/0".into(),
            prompt: "def f(x):\n    \"\"\"Return x.\"\"\"\n".into(),
            entry_point: "f".into(),
            canonical_solution: "    return x\n".into(),
            test: "\n\ndef check(candidate):\n    assert candidate(1) == 1\n".into(),
        }
    }

    struct Constant(&'static str, f64);

    impl RewardFn for Constant {
        fn name(&self) -> &str {
            self.0
        }
        fn score(&self, batch: &[Completion]) -> Result<Vec<f64>, RewardError> {
            Ok(vec![self.1; batch.len()])
        }
    }

    #[test]
    fn weights_are_checked() {
        assert_eq!(parse_weights("0.6,0.15,0.15,0.1").unwrap(), DEFAULT_WEIGHTS);
        assert_eq!(parse_weights(" 1, 0,0 ,0").unwrap(), [1.0, 0.0, 0.0, 0.0]);
        for (bad, says) in [
            ("0.6,0.15,0.15", "expected 4 comma-separated weights"),
            ("0.6,x,0.15,0.1", "`x` is not a number"),
            ("0.6,-0.1,0.15,0.1", "at least 0"),
            ("0.6,nan,0.15,0.1", "finite"),
            ("0,0,0,0", "sum to 0"),
            ("1,inf,0,0", "finite"),
        ] {
            let e = parse_weights(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let twice = CompositeReward::new(vec![
            (Box::new(Constant("a", 1.0)), 1.0),
            (Box::new(Constant("a", 1.0)), 1.0),
        ]);
        assert!(twice.is_err());
        assert!(CompositeReward::new(vec![]).is_err());
    }

    #[test]
    fn static_terms_and_user_terms_combine() {
        let p = problem();
        let batch = [
            Completion::new(&p, "    return x\n"),
            Completion::new(&p, "    return eval(input())\n"),
            Completion::new(&p, "    return (x\n"),
            Completion::new(
                &p,
                "# SPDX-License-Identifier: GPL-3.0-only\n    return x\n",
            ),
            Completion::new(&p, "    return 'a\0b'\n"),
        ];
        let reward = CompositeReward::new(vec![
            (Box::new(Security), 0.5),
            (Box::new(Quality), 0.25),
            (
                Box::new(License::new(LicensePolicy::default(), None).unwrap()),
                0.25,
            ),
        ])
        .unwrap()
        .with(Box::new(Constant("length", 0.5)), 1.0)
        .unwrap();
        let r = reward.score(&batch).unwrap();
        let c = |i: usize, k: &str| r[i].components[k];
        assert_eq!(c(0, "security"), 1.0);
        assert!(c(0, "quality") > 0.5, "{}", c(0, "quality"));
        assert_eq!(c(0, "license"), 1.0);
        assert_eq!(c(0, "length"), 0.5);
        let total = 0.5 * c(0, "security") + 0.25 * c(0, "quality") + 0.25 + 0.5;
        assert!((r[0].total - total).abs() < 1e-12);
        // eval(): B307, MEDIUM/HIGH.
        assert!(c(1, "security") < 1.0);
        assert!(
            r[1].findings
                .iter()
                .any(|f| f.term == "security" && f.finding.rule == "B307")
        );
        assert_eq!(c(2, "quality"), 0.0);
        assert_eq!(r[2].details["quality"]["parses"], false);
        assert_eq!(c(3, "license"), 0.0);
        assert!(r[3].findings.iter().any(|f| f.finding.rule == "L001"));
        // Not analyzable at all: every static term 0, and why.
        for k in ["security", "quality", "license"] {
            assert_eq!(c(4, k), 0.0, "{k}");
            assert!(
                r[4].details[k]["error"].as_str().unwrap().contains("NUL"),
                "{k}"
            );
        }
        let s = summarize(&reward, &r);
        assert_eq!(s.n, 5);
        assert_eq!(s.means["length"], 0.5);
        assert_eq!(s.total_histogram.iter().sum::<u64>(), 5);
        assert!(s.total_quartiles[0] <= s.total_quartiles[2]);
        assert!(s.total_quartiles[2] <= s.total_quartiles[4]);
    }

    #[test]
    fn verdicts_given_are_used_and_missing_ones_are_an_error() {
        let p = problem();
        let v =
            crate::evaluate::verdict(true, "passed".into(), crate::evaluate::CheckMode::InProcess);
        let batch = [Completion::new(&p, "    return x\n").with_verdict(v)];
        let r = TestPassRate::from_verdicts().score(&batch).unwrap();
        assert_eq!(r, vec![1.0]);
        let batch = [Completion::new(&p, "    return x\n")];
        let e = TestPassRate::from_verdicts().score(&batch).unwrap_err();
        assert!(e.to_string().contains("no scorer"), "{e}");
    }

    #[test]
    fn quartiles_interpolate() {
        let reward = CompositeReward::new(vec![(Box::new(Constant("a", 0.0)), 1.0)]).unwrap();
        let rs: Vec<Reward> = [0.0, 0.25, 0.5, 1.0]
            .iter()
            .map(|&t| Reward {
                components: BTreeMap::from([("a".to_string(), t)]),
                total: t,
                findings: vec![],
                details: BTreeMap::new(),
            })
            .collect();
        let s = summarize(&reward, &rs);
        assert_eq!(s.total_quartiles, [0.0, 0.1875, 0.375, 0.625, 1.0]);
        assert_eq!(s.total_histogram, vec![1, 0, 1, 0, 0, 1, 0, 0, 0, 1]);
        assert!((s.total_mean - 0.4375).abs() < 1e-12);
    }
}
