//! `anvil runs …`: find, compare, plot and sync tracked runs.

use anvil_tracking::folder::{self, RunFolder};
use anvil_tracking::plot::{self, PlotOptions};
use anvil_tracking::{MlflowTarget, TrackingConfig, report};
use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Where the trainer puts run folders.
const DEFAULT_ROOT: &str = "checkpoints/runs";

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Table of the runs under a folder: status, steps, best val/loss, pass@1, duration.
    #[command(
        after_help = "A run still marked RUNNING whose process is gone shows as KILLED.

Examples:
  anvil runs list
  anvil runs list --root /data/experiments"
    )]
    List(RootArg),
    /// Everything about one run: status, tags, params, metric summaries, artifacts, MLflow sync.
    #[command(after_help = "RUN is a run folder, or the name of a run under --root.

Examples:
  anvil runs show quick-1
  anvil runs show checkpoints/runs/quick-1")]
    Show(ShowArgs),
    /// Params that differ and final metrics, side by side.
    #[command(after_help = "Examples:
  anvil runs compare quick-1 quick-2
  anvil runs compare checkpoints/runs/*")]
    Compare(CompareArgs),
    /// Line charts of metrics (raw and EMA-smoothed, one colour per run, one panel per metric).
    #[command(after_help = "Examples:
  anvil runs plot quick-1 quick-2 --out loss.png
  anvil runs plot quick-1 --metric train/loss,val/loss,train/lr --smoothing 0.6 --out q1.png")]
    Plot(PlotArgs),
    /// Send to MLflow what a run's server has not received yet (it was down, the run was killed).
    #[command(
        after_help = "Without --uri, the server and experiment the run was mirrored to (its mlflow.json), \
else MLFLOW_TRACKING_URI. Only what is missing is sent; running it twice sends nothing the second time.

Examples:
  anvil runs sync quick-1
  anvil runs sync quick-1 --uri http://127.0.0.1:5000 --experiment anvil"
    )]
    Sync(SyncArgs),
}

#[derive(Args)]
pub struct RootArg {
    /// Folder holding run folders (one or two levels down).
    #[arg(long, default_value = DEFAULT_ROOT)]
    root: PathBuf,
}

#[derive(Args)]
pub struct ShowArgs {
    run: String,
    #[command(flatten)]
    root: RootArg,
}

#[derive(Args)]
pub struct CompareArgs {
    #[arg(required = true, num_args = 2..)]
    runs: Vec<String>,
    #[command(flatten)]
    root: RootArg,
}

#[derive(Args)]
pub struct PlotArgs {
    #[arg(required = true)]
    runs: Vec<String>,
    /// Metrics to plot, comma-separated, one panel each.
    #[arg(long, value_delimiter = ',', default_value = "train/loss,val/loss")]
    metric: Vec<String>,
    /// Smoothing of the bold line, in [0, 1): 0 draws raw values only; 0.9 averages over about
    /// 2% of the steps.
    #[arg(long, default_value_t = 0.9)]
    smoothing: f64,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Chart title (default: the runs and metrics).
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    root: RootArg,
}

#[derive(Args)]
pub struct SyncArgs {
    run: String,
    /// MLflow server, http(s)://host:port.
    #[arg(long)]
    uri: Option<String>,
    /// MLflow experiment (default: the run's, else MLFLOW_EXPERIMENT_NAME, else `anvil`).
    #[arg(long)]
    experiment: Option<String>,
    #[command(flatten)]
    root: RootArg,
}

pub fn run(cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::List(a) => list(&a.root),
        RunsCommand::Show(a) => {
            let r = folder::resolve(&a.run, &a.root.root)?;
            print!("{}", report::show(&r)?);
            Ok(())
        }
        RunsCommand::Compare(a) => {
            let runs = resolve_all(&a.runs, &a.root.root)?;
            print!("{}", report::compare(&runs)?);
            Ok(())
        }
        RunsCommand::Plot(a) => plot(a),
        RunsCommand::Sync(a) => sync(a),
    }
}

fn resolve_all(specs: &[String], root: &Path) -> Result<Vec<RunFolder>> {
    Ok(specs
        .iter()
        .map(|s| folder::resolve(s, root))
        .collect::<Result<Vec<_>, _>>()?)
}

fn list(root: &Path) -> Result<()> {
    if !root.is_dir() {
        bail!(
            "{}: no such folder (runs are created there by training; give --root)",
            root.display()
        );
    }
    let found = folder::discover(root)?;
    for e in &found.unreadable {
        eprintln!("warning: skipped {e}");
    }
    let runs = found.runs;
    if runs.is_empty() {
        println!("no runs under {}", root.display());
        return Ok(());
    }
    print!("{}", report::list(&runs)?);
    Ok(())
}

fn plot(a: PlotArgs) -> Result<()> {
    super::parent_folder(&a.out)?;
    let runs = resolve_all(&a.runs, &a.root.root)?;
    let opts = PlotOptions {
        metrics: a
            .metric
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        smoothing: a.smoothing,
        title: a.title,
        ..PlotOptions::default()
    };
    let dirs: Vec<&Path> = runs.iter().map(|r| r.dir.as_path()).collect();
    let missing = plot::plot_runs(&dirs, &opts, &a.out)?;
    if !missing.is_empty() {
        println!("no run has {}: left out", missing.join(", "));
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

fn sync(a: SyncArgs) -> Result<()> {
    let run = folder::resolve(&a.run, &a.root.root)?;
    let target = match (&a.uri, &run.mlflow) {
        (Some(uri), saved) => {
            // A new server gets the run's experiment unless told otherwise.
            let exp = a
                .experiment
                .clone()
                .or_else(|| saved.as_ref().map(|s| s.experiment.clone()))
                .or_else(|| std::env::var("MLFLOW_EXPERIMENT_NAME").ok())
                .unwrap_or_else(|| anvil_tracking::mlflow::DEFAULT_EXPERIMENT.into());
            Some(MlflowTarget::new(uri, &exp).map_err(|e| anyhow!("--uri: {e}"))?)
        }
        (None, Some(saved)) => match &a.experiment {
            Some(e) => Some(MlflowTarget::new(&saved.uri, e).map_err(|e| anyhow!("{e}"))?),
            None => None,
        },
        (None, None) => {
            let cfg = TrackingConfig {
                uri: None,
                experiment: a.experiment.clone(),
            };
            Some(cfg.mlflow_target()?.ok_or_else(|| {
                anyhow!(
                    "{}: never sent to MLflow; give --uri or set MLFLOW_TRACKING_URI",
                    run.dir.display()
                )
            })?)
        }
    };
    let r = anvil_tracking::sync_run(&run.dir, target)?;
    println!(
        "{} → {} experiment {:?} run {}: sent {} metric lines ({} in all), {} params, {} tags, {} artifacts",
        run.meta.name,
        r.uri,
        r.experiment,
        r.run_id,
        r.metrics_sent,
        r.metrics_total,
        r.params,
        r.tags,
        r.artifacts
    );
    Ok(())
}
