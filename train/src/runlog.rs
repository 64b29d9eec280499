//! The trainer's side of experiment tracking: the run folder (`anvil_tracking`) plus what only a
//! training run has — the resolved recipe to resume from and the final summary.

use crate::recipe::Recipe;
use crate::trainer::{RunOptions, RunSummary};
use anvil_tracking::plot::PlotOptions;
use anvil_tracking::{Result, TrackingError};
use anvil_tracking::{Run, RunInfo, RunKind, Status};
use std::path::Path;

/// The loss curves, written into the run folder at the end of a run.
pub const LOSS_PLOT: &str = "loss.png";

pub struct RunLog {
    run: Run,
    /// The metrics `finish` plots (default: the loss curves) and the file they go to.
    plot: (String, Option<Vec<String>>),
}

/// `YYYYmmdd-HHMMSS` in UTC, for run names.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `<dir>/recipe.toml`, the resolved recipe `--resume` reads back, replaced atomically (and left
/// alone when it already says the same).
fn write_recipe(dir: &Path, recipe: &Recipe) -> Result<()> {
    let text = toml::to_string_pretty(recipe)
        .map_err(|e| TrackingError::invalid(dir, format!("recipe does not serialize: {e}")))?;
    let path = dir.join("recipe.toml");
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    anvil_tracking::folder::write_atomic(&path, text.as_bytes(), true)
}

impl RunLog {
    /// A new run folder with the resolved recipe (`recipe.toml`, what `--resume` reads back)
    /// and its flattened parameters.
    pub fn create(dir: &Path, recipe: &Recipe, opts: &RunOptions) -> Result<Self> {
        let run = Run::create(
            dir,
            RunInfo {
                name: String::new(),
                kind: RunKind::Train,
                command_line: opts.command_line.clone(),
                recipe: opts.recipe_path.as_ref().map(|p| p.display().to_string()),
                mlflow: recipe.tracking.mlflow_target()?,
            },
        )?;
        write_recipe(dir, recipe)?;
        run.log_params(anvil_tracking::params::flatten(recipe))?;
        Ok(Self::of(run))
    }

    /// Continues the run in `dir` with `recipe` (its `recipe.toml` plus `opts.overrides`, already
    /// resolved): `recipe.toml` is replaced by it, so a later plain `--resume` keeps the
    /// overrides, and the overrides are recorded as the tag `resume.N.overrides` (N = 1 for the
    /// first resume). Params are not logged again: they are write-once (here and in MLflow) and
    /// keep the values the run started with.
    pub fn resume(dir: &Path, recipe: &Recipe, opts: &RunOptions) -> Result<Self> {
        let run = Run::resume(dir, recipe.tracking.mlflow_target()?)?;
        write_recipe(dir, recipe)?;
        if !opts.overrides.is_empty() {
            let n = run.attempts().saturating_sub(1);
            run.set_tag(&format!("resume.{n}.overrides"), opts.overrides.join(" "))?;
        }
        Ok(Self::of(run))
    }

    fn of(run: Run) -> Self {
        Self {
            run,
            plot: (LOSS_PLOT.into(), None),
        }
    }

    /// `finish` plots these metrics into `<run>/<file>` instead of the loss curves.
    pub fn plot_metrics(&mut self, file: &str, metrics: &[&str]) {
        self.plot = (
            file.into(),
            Some(metrics.iter().map(|m| m.to_string()).collect()),
        );
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        self.run.dir()
    }

    pub fn metrics(&self, step: usize, metrics: &[(String, f64)]) -> Result<()> {
        let m: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.run.log_metrics(step as u64, &m)
    }

    pub fn artifact_copy(&self, path: &Path, name: &str) -> Result<()> {
        self.run.log_artifact_as(path, name).map(|_| ())
    }

    /// `summary.json` in the run folder (and as an artifact), `loss.png`, the checkpoint as an
    /// artifact reference, and the final status (KILLED when interrupted).
    pub fn finish(&self, summary: &RunSummary) -> Result<()> {
        let json = serde_json::to_vec_pretty(summary).expect("summary serializes");
        anvil_tracking::folder::write_atomic(&self.run.dir().join("summary.json"), &json, true)?;
        self.run.log_artifact_bytes("summary.json", &json)?;
        if let Some(c) = &summary.last_checkpoint {
            self.run.log_artifact_ref("checkpoint", c)?;
        }
        // Before the status: the MLflow mirror uploads what is logged by then. A plot that cannot
        // be drawn costs the run nothing but a warning.
        if let Err(e) = self.plot() {
            let why = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("warning: loss plot not written: {why}");
        }
        self.run.finish(if summary.interrupted {
            Status::Killed
        } else {
            Status::Finished
        })
    }

    /// `<run>/loss.png`: train/loss and val/loss (what `anvil runs plot RUN` draws), or what
    /// [`Self::plot_metrics`] chose, also logged as an artifact.
    fn plot(&self) -> Result<()> {
        let dir = self.run.dir();
        let (file, metrics) = &self.plot;
        let out = dir.join(file);
        let mut opts = PlotOptions::default();
        if let Some(m) = metrics {
            opts.metrics = m.clone();
        }
        anvil_tracking::plot::plot_runs(&[dir], &opts, &out)?;
        self.run.log_artifact_as(&out, file)?;
        Ok(())
    }
}
