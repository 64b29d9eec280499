//! `anvil build`: plans → patches with the diffusion denoiser (see `anvil_builder`).

use anvil_builder::{BuildConfig, Builder, Plan, PlanReport};
use anvil_infer::Generator;
use anvil_infer::diffusion::{DiffusionParams, Remasking};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  anvil build --checkpoint checkpoints/runs/diffusion-quickstart --file src/util.py \\
      --target parse_args --intent 'accept --verbose' --out patches
  anvil build --checkpoint DIFF --fallback checkpoints/runs/quickstart --plans plans.jsonl --out patches
  git apply patches/000-util.patch

A plan line: {\"file\": \"src/util.py\", \"targets\": [\"parse_args\"], \"intent\": \"…\",
\"condition\": \"…\", \"language\": \"python\", \"priority\": 1, \"context\": \"…\"}

Writes, per plan in priority order, NNN-<file>.patch (a unified diff for `git apply`; empty for a
plan that failed) and NNN-<file>.json (provenance: plan, masked spans, model, steps, cfg, seed,
which model wrote each span, syntax validity, validation errors, risk, timestamp), and
builds.jsonl with every plan's JSON. Exits non-zero when a plan failed or --apply refused one.")]
pub struct BuildArgs {
    /// The diffusion denoiser (checkpoint or run folder).
    #[arg(long)]
    checkpoint: PathBuf,
    /// An autoregressive checkpoint that fills (fill-in-the-middle) any span whose
    /// regeneration does not parse.
    #[arg(long, value_name = "CKPT")]
    fallback: Option<PathBuf>,
    /// tokenizer.json (default: beside the checkpoint or in its run folder).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// One plan: the file to change.
    #[arg(long, conflicts_with = "plans", requires_all = ["target", "intent"])]
    file: Option<PathBuf>,
    /// One plan: functions, methods (`Class.method`) or classes to regenerate (several after one
    /// flag, or the flag repeated).
    #[arg(long, num_args = 1..)]
    target: Vec<String>,
    /// One plan: what the change should do.
    #[arg(long)]
    intent: Option<String>,
    /// One plan: a condition the code must meet.
    #[arg(long)]
    condition: Option<String>,
    /// One plan: the file's language (default: from its extension).
    #[arg(long)]
    lang: Option<String>,
    /// A JSONL file of plans (file, targets, intent, condition, language, priority, context).
    #[arg(long)]
    plans: Option<PathBuf>,
    /// Where the patches and their JSON go (created).
    #[arg(long)]
    out: PathBuf,
    /// Diffusion steps per span (capped at its length).
    #[arg(long, default_value_t = 64)]
    steps: usize,
    #[arg(long, default_value = "low_confidence")]
    remasking: Remasking,
    #[arg(long)]
    block_length: Option<usize>,
    /// Classifier-free guidance weight (1 = conditional only).
    #[arg(long, default_value_t = 1.0)]
    cfg: f32,
    /// 0 = the most probable token at each unmasking.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Span length = the original body's tokens times this.
    #[arg(long, default_value_t = 1.0)]
    length_ratio: f32,
    /// Regenerate whole definitions, signatures included (bodies only by default).
    #[arg(long)]
    whole: bool,
    /// Paths in the patches are relative to this folder (default: the current one).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Write the patched files (atomically) — only patches whose risk is at most --max-risk.
    #[arg(long)]
    apply: bool,
    #[arg(long, default_value_t = 0.5)]
    max_risk: f64,
    #[command(flatten)]
    device: super::DeviceArgs,
    /// Worker threads for tensor work (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: BuildArgs) -> Result<()> {
    super::set_threads(a.threads, "--threads")?;
    if !(0.0..=1.0).contains(&a.max_risk) {
        bail!("--max-risk must be in [0, 1], got {}", a.max_risk);
    }
    if !(a.length_ratio.is_finite() && a.length_ratio > 0.0 && a.length_ratio <= 8.0) {
        bail!("--length-ratio must be in (0, 8], got {}", a.length_ratio);
    }
    let plans: Vec<Plan> = match (&a.plans, &a.file) {
        (Some(p), _) => anvil_builder::read_plans(p).map_err(anyhow::Error::msg)?,
        (None, Some(f)) => vec![Plan {
            file: f.clone(),
            targets: a.target.clone(),
            intent: a.intent.clone().unwrap_or_default(),
            condition: a.condition.clone(),
            language: a.lang.clone(),
            priority: 0,
            context: None,
        }],
        (None, None) => bail!("give one plan (--file, --target, --intent) or --plans FILE"),
    };
    let device = a.device.device()?;
    let denoiser = Generator::load_on(&a.checkpoint, None, a.tokenizer.as_deref(), &device)?;
    if denoiser.model.config.diffusion.is_none() {
        bail!(
            "--checkpoint {}: not a diffusion denoiser (`arch = \"diffusion\"`)",
            a.checkpoint.display()
        );
    }
    let fallback = match &a.fallback {
        Some(p) => {
            let g = Generator::load_on(p, None, None, &device)
                .with_context(|| format!("--fallback {}", p.display()))?;
            if g.model.config.diffusion.is_some() {
                bail!(
                    "--fallback {}: must be an autoregressive model",
                    p.display()
                );
            }
            Some(g)
        }
        None => None,
    };
    let root = match &a.root {
        Some(r) => r.clone(),
        None => std::env::current_dir()?,
    };
    let builder = Builder {
        denoiser: &denoiser,
        model_name: a.checkpoint.display().to_string(),
        fallback: fallback
            .as_ref()
            .zip(a.fallback.as_ref())
            .map(|(g, p)| (g, p.display().to_string())),
        config: BuildConfig {
            diffusion: DiffusionParams {
                steps: a.steps,
                remasking: a.remasking,
                block_length: a.block_length,
                cfg: a.cfg,
                temperature: a.temperature,
                seed: a.seed,
                ..DiffusionParams::default()
            },
            length_ratio: a.length_ratio,
            min_tokens: 4,
            whole: a.whole,
            root,
        },
    };
    builder.config.diffusion.validate()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (mut failed, mut refused) = (0, 0);
    let mut lines = String::new();
    for (k, plan) in plans.iter().enumerate() {
        let now = anvil_tracking::system::now_ms();
        let stamp = format!("{} UTC", anvil_tracking::system::format_utc(now));
        let mut report = builder.build(plan, stamp);
        let mut v = serde_json::to_value(&report)?;
        let applied = apply(&a, &report, &mut refused);
        v["applied"] = applied.clone();
        let stem = plan
            .file
            .file_name()
            .map_or("plan".into(), |s| s.to_string_lossy().into_owned());
        let patch = a.out.join(format!("{k:03}-{stem}.patch"));
        let json = a.out.join(format!("{k:03}-{stem}.json"));
        anvil_data::atomic::write(&patch, report.diff.as_bytes())?;
        anvil_data::atomic::write(&json, serde_json::to_string_pretty(&v)?.as_bytes())?;
        lines.push_str(&format!("{v}\n"));
        println!("{}", summary(k, &report, &patch, &applied));
        if report.error.is_some() {
            failed += 1;
        }
        report.new_text = None;
    }
    anvil_data::atomic::write(&a.out.join("builds.jsonl"), lines.as_bytes())?;
    if failed + refused > 0 {
        bail!(
            "{failed} of {} plans failed, {refused} not applied (risk above --max-risk {}); see {}",
            plans.len(),
            a.max_risk,
            a.out.display()
        );
    }
    Ok(())
}

/// With --apply, writes the patched file when the plan built and its risk is low enough;
/// returns what happened, for the JSON.
fn apply(a: &BuildArgs, r: &PlanReport, refused: &mut usize) -> serde_json::Value {
    if !a.apply || r.error.is_some() {
        return serde_json::Value::Bool(false);
    }
    let risk = r.risk.as_ref().map_or(1.0, |x| x.score);
    if risk > a.max_risk {
        *refused += 1;
        return serde_json::json!({"refused": format!("risk {risk:.2} > --max-risk {}", a.max_risk)});
    }
    match &r.new_text {
        Some(text) => match anvil_data::atomic::write(&r.plan.file, text.as_bytes()) {
            Ok(()) => serde_json::Value::Bool(true),
            Err(e) => {
                *refused += 1;
                serde_json::json!({"refused": e.to_string()})
            }
        },
        None => serde_json::Value::Bool(false),
    }
}

fn summary(
    k: usize,
    r: &PlanReport,
    patch: &std::path::Path,
    applied: &serde_json::Value,
) -> String {
    let file = r.plan.file.display();
    if let Some(e) = &r.error {
        return format!(
            "plan {k}: {file}: error: {e} (empty patch {})",
            patch.display()
        );
    }
    let by = |w: anvil_builder::Writer| r.spans.iter().filter(|s| s.path == w).count();
    let risk = r.risk.as_ref().map_or(0.0, |x| x.score);
    let applied = match applied {
        serde_json::Value::Bool(true) => ", applied".to_string(),
        serde_json::Value::Object(o) => {
            format!(", not applied: {}", o["refused"].as_str().unwrap_or(""))
        }
        _ => String::new(),
    };
    format!(
        "plan {k}: {file}: {} spans ({} diffusion, {} fallback), {}, risk {risk:.2} → {}{applied}",
        r.spans.len(),
        by(anvil_builder::Writer::Diffusion),
        by(anvil_builder::Writer::Fallback),
        if r.syntax_valid {
            "parses"
        } else {
            "does NOT parse"
        },
        patch.display()
    )
}
