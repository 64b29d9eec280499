//! `anvil reward …`: the composite reward (docs/reward.md) over samples, and the static analyzers
//! over files.

use super::eval::RunArgs;
use anvil_data::problems::Problem;
use anvil_eval::analyze::license::{CorpusIndex, LicensePolicy};
use anvil_eval::analyze::report;
use anvil_eval::evaluate::{Verdict, problems_for};
use anvil_eval::reward::{
    self, Completion, CompositeReward, License, RewardSummary, TERMS, TestPassRate,
};
use anvil_eval::samples::{self, Sample};
use anvil_eval::scorer::Scorer;
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum RewardCommand {
    /// Score samples with the composite reward: test pass rate, security, quality, license.
    #[command(
        after_help = "R = 0.6·test pass rate + 0.15·(1 − security risk) + 0.15·quality + 0.1·license \
(weights in that order with --weights; the total is Σ weight·term, not normalized).

The test pass rate is the share of a problem's asserts the sample passes where its check converts \
into cases (as `eval pass-at-k` decides them out of process), else 1 or 0 for the whole test program. \
The static terms analyze prompt + completion, the function as it will run. Details: docs/reward.md.

Writes SAMPLES_rewards.jsonl: per sample its task_id, completion_index (its rank among its task's \
samples), line, every component, the total, the findings of every term, and each term's details.

Examples:
  anvil reward score --problems humaneval --samples samples.jsonl
  anvil reward score --problems synth/heldout.jsonl --samples out.jsonl --weights 0.7,0.1,0.1,0.1
  anvil reward score --samples s.jsonl --license-allow MIT,Apache-2.0 --corpus-index CORPUS_DIR"
    )]
    Score(ScoreArgs),
    /// Security findings, complexity, maintainability, lints and license of Python files.
    #[command(
        after_help = "Findings: Bandit-compatible security rules (B…), pyflakes-compatible lints (F…, W0101), \
license rules (L…), syntax errors (E999); per function radon's cyclomatic complexity and rank, per file \
the maintainability index and the reward's three static scores. Exits 0 whatever is found; non-zero \
only for bad input (a path that does not exist, a bad --license-allow). A file that cannot be \
analyzed (binary, not UTF-8, too large, nested too deep) is reported with its error.

Examples:
  anvil reward analyze src/ tests/test_app.py
  anvil reward analyze pkg --format sarif > anvil.sarif
  anvil reward analyze pkg --format json --license-allow MIT,BSD-3-Clause"
    )]
    Analyze(AnalyzeArgs),
}

/// The composite reward's settings: shared by `reward score` and `eval pass-at-k --reward`.
#[derive(Args)]
pub struct RewardArgs {
    /// Weights of test pass rate, security, quality and license, in that order (finite, ≥ 0,
    /// not all 0) [default: 0.6,0.15,0.15,0.1].
    #[arg(long, value_name = "W,W,W,W")]
    weights: Option<String>,
    /// SPDX license ids the samples' own code (and the corpus files they near-copy) may be
    /// under, comma-separated [default: a permissive set, see docs/reward/license.md].
    #[arg(long, value_delimiter = ',', value_name = "ID,…")]
    license_allow: Vec<String>,
    /// The training corpus's near-duplicate index (`minhash.idx`, or the prepared corpus folder
    /// holding it) for the license term's code-referencing check.
    #[arg(long, value_name = "PATH")]
    corpus_index: Option<PathBuf>,
}

impl RewardArgs {
    /// Whether any of these was given.
    pub fn any(&self) -> bool {
        self.weights.is_some() || !self.license_allow.is_empty() || self.corpus_index.is_some()
    }

    /// The four built-in terms with these settings; the tests' verdicts are expected on the
    /// completions (both commands run the tests first, with a progress bar).
    pub fn composite(&self) -> Result<CompositeReward> {
        let weights = match &self.weights {
            Some(w) => reward::parse_weights(w).with_context(|| format!("--weights {w}"))?,
            None => reward::default_weights(),
        };
        let policy = policy(&self.license_allow)?;
        let index = match &self.corpus_index {
            Some(path) => Some(Arc::new(
                CorpusIndex::load(path, policy.jaccard_threshold).context("--corpus-index")?,
            )),
            None => None,
        };
        let license = License::new(policy, index).context("--license-allow")?;
        Ok(CompositeReward::standard(
            TestPassRate::from_verdicts(),
            license,
            weights,
        )?)
    }
}

/// The default policy, with `allow` replaced when licenses are given.
fn policy(allow: &[String]) -> Result<LicensePolicy> {
    let mut policy = LicensePolicy::default();
    if !allow.is_empty() {
        policy.allow = allow.iter().map(|s| s.trim().to_string()).collect();
    }
    policy.validate().context("--license-allow")?;
    Ok(policy)
}

#[derive(Args)]
pub struct ScoreArgs {
    /// `humaneval` (shipped with Anvil) or a JSONL file of task_id, prompt, test, entry_point.
    #[arg(long, default_value = "humaneval")]
    problems: String,
    /// JSONL of task_id, completion (other fields are ignored).
    #[arg(long)]
    samples: PathBuf,
    #[command(flatten)]
    reward: RewardArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Python files, or folders to search for `*.py` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// SPDX license ids the files may be under, comma-separated [default: a permissive set].
    #[arg(long, value_delimiter = ',', value_name = "ID,…")]
    license_allow: Vec<String>,
}

pub fn run(cmd: RewardCommand) -> Result<()> {
    match cmd {
        RewardCommand::Score(a) => score(a),
        RewardCommand::Analyze(a) => analyze(a),
    }
}

fn score(a: ScoreArgs) -> Result<()> {
    a.run.check()?;
    let reward = a.reward.composite()?;
    let problems = anvil_data::problems::load(&a.problems).context("--problems")?;
    let samples = a.run.read_samples(&a.samples)?;
    let of_sample =
        problems_for(&problems, &samples).with_context(|| a.samples.display().to_string())?;
    let scorer = Scorer::new(a.run.sandbox()?, a.run.workers)?;
    let pairs: Vec<(&Problem, &str)> = of_sample
        .iter()
        .zip(&samples)
        .map(|(p, s)| (*p, s.completion.as_str()))
        .collect();
    let pb = anvil_data::progress::bar(samples.len() as u64, "running tests", false);
    let t0 = std::time::Instant::now();
    let verdicts = scorer
        .score_with_progress(&pairs, &pb)
        .with_context(|| a.samples.display().to_string())?;
    pb.finish_and_clear();
    let tests_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let (summary, path) = score_and_write(&reward, &of_sample, &samples, &verdicts, &a.samples)?;
    let static_secs = t1.elapsed().as_secs_f64();
    print_summary(&summary);
    println!(
        "  {} samples of {} problems: tests {tests_secs:.1}s, static terms {static_secs:.2}s",
        samples.len(),
        scorer.n_prepared(),
    );
    println!("wrote {}", path.display());
    Ok(())
}

/// Scores `samples` (with their tests' `verdicts`) and writes `<samples>_rewards.jsonl`.
pub fn score_and_write(
    reward: &CompositeReward,
    of_sample: &[&Problem],
    samples: &[Sample],
    verdicts: &[Verdict],
    samples_path: &Path,
) -> Result<(RewardSummary, PathBuf)> {
    let batch: Vec<Completion> = of_sample
        .iter()
        .zip(samples)
        .zip(verdicts)
        .map(|((p, s), v)| Completion::new(p, &s.completion).with_verdict(v.clone()))
        .collect();
    let rewards = reward.score(&batch)?;
    let path = samples::rewards_path(samples_path);
    samples::write_jsonl(&path, &reward::rows(samples, &rewards))?;
    Ok((reward::summarize(reward, &rewards), path))
}

/// Means of every term and of the total, and the total's quartiles and histogram.
pub fn print_summary(s: &RewardSummary) {
    let terms: Vec<String> = TERMS
        .iter()
        .filter_map(|t| {
            Some(format!(
                "{t} {:.4} ×{}",
                s.means.get(*t)?,
                s.weights.get(*t)?
            ))
        })
        .collect();
    println!(
        "reward {:.4} (mean of {} samples): {}",
        s.total_mean,
        s.n,
        terms.join(", ")
    );
    let [min, q1, med, q3, max] = s.total_quartiles;
    println!("  total: min {min:.4}  25% {q1:.4}  median {med:.4}  75% {q3:.4}  max {max:.4}");
    let top: f64 = s.weights.values().sum();
    let bins: Vec<String> = s.total_histogram.iter().map(u64::to_string).collect();
    println!(
        "  total histogram ({} bins over [0, {top}]): {}",
        bins.len(),
        bins.join(" ")
    );
}

fn analyze(a: AnalyzeArgs) -> Result<()> {
    let policy = policy(&a.license_allow)?;
    let reports = report::analyze_paths(&a.paths, &policy)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match a.format {
        Format::Text => report::write_text(&reports, &mut out),
        Format::Json => report::write_json(&reports, &mut out),
        Format::Sarif => report::write_sarif(&reports, &mut out),
    }
    .and_then(|()| out.flush())
    .context("writing the report")?;
    Ok(())
}
