//! `anvil train run`.

use crate::cmd::recipe;
use anvil_train::dist::{Launch, World};
use anvil_train::{Recipe, RunOptions};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train a model from a recipe: builds the data if needed, then trains, validates,
    /// checkpoints and logs a run folder.
    ///
    /// Examples:
    ///   anvil train run recipes/quickstart.toml
    ///   anvil train run recipes/quickstart.toml train.max_steps=200 model.n_layers=2 output.name=small
    ///   anvil train run --resume checkpoints/runs/quickstart-20261121-101500
    ///   mpirun -np 4 anvil train run recipes/quickstart.toml distributed.zero=1
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The recipe (TOML). Optional with --resume, which uses the run's own resolved recipe.
    recipe: Option<PathBuf>,
    /// Overrides, `section.key=value` (e.g. `optim.lr=1e-3 train.max_steps=200`).
    overrides: Vec<String>,
    /// Continue this run folder from its newest checkpoint (model, optimizer, schedule, data
    /// position): the result is bit-identical to a run that was never interrupted. Overrides
    /// given with it are written back to the run's recipe.toml (`model.*` cannot change); a run
    /// at train.max_steps continues only if that is raised.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Worker threads for tensor work (default: train.threads, or every core; under MPI, the
    /// cores of this machine shared among its ranks).
    #[arg(long)]
    threads: Option<usize>,
    /// How processes are joined: `auto` runs data-parallel when started by mpirun/srun (needs
    /// a build with `--features mpi`), `mpi` requires it, `none` runs this process alone.
    #[arg(long, value_name = "auto|mpi|none", default_value = "auto", value_parser = parse_launch)]
    distributed: Launch,
}

fn parse_launch(s: &str) -> Result<Launch, String> {
    match s {
        "auto" => Ok(Launch::Auto),
        "mpi" => Ok(Launch::Mpi),
        "none" => Ok(Launch::None),
        _ => Err(format!("`{s}`: auto, mpi or none")),
    }
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Run(a) => train_run(a),
    }
}

fn train_run(a: RunArgs) -> Result<()> {
    let world = match World::from_env(a.distributed) {
        Ok(w) => w,
        // Every rank of the job meets this and the first says it. Without MPI the ranks cannot
        // wait for each other, and mpirun ends the job at the first non-zero exit: the others
        // give rank 0 a moment to print.
        Err(_) if anvil_train::dist::launch_rank() > 0 => {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(1)
        }
        Err(e) => bail!(e),
    };
    if !world.is_root() {
        anvil_data::progress::set_quiet(true);
    }
    let outcome = train_run_on(a, &world);
    // Rank 0 speaks for the job. An error every rank agreed on (setup's) is printed by rank 0
    // before any rank exits (mpirun ends the job at the first non-zero exit); any other rank's
    // error ends the job at once, or the others would wait for it in the next collective.
    match &outcome {
        Err(e) if world.is_distributed() && !world.failed_together() => {
            eprintln!("error: rank {}: {e:#}", world.rank());
            world.abort(1)
        }
        Err(e) if world.is_distributed() => {
            if world.is_root() {
                eprintln!("error: {e:#}");
            }
            world.barrier();
            drop(world);
            std::process::exit(1)
        }
        _ => {}
    }
    // MPI is finalized before the exit code is set.
    drop(world);
    if outcome? {
        std::process::exit(130);
    }
    Ok(())
}

/// The recipe with its overrides, and how the run starts (every rank reads the same files
/// and fails alike here, before any rank waits for another).
fn prepare(a: RunArgs, world: &World) -> Result<(Recipe, RunOptions)> {
    let mut overrides = a.overrides.clone();
    // `anvil train run key=value` with --resume: the first "recipe" is really an override.
    let recipe_path = match (&a.recipe, &a.resume) {
        (Some(p), Some(_)) if p.to_string_lossy().contains('=') => {
            overrides.insert(0, p.to_string_lossy().into_owned());
            None
        }
        (p, _) => p.clone(),
    };
    let recipe_file = match (&recipe_path, &a.resume) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join("recipe.toml"),
        (None, None) => bail!("give a recipe file (or --resume RUN_DIR)"),
    };
    if !recipe_file.is_file() {
        bail!("{}: no such recipe file", recipe_file.display());
    }
    if a.resume.is_some() {
        // The checkpoints hold the model the run recorded; another shape could not load them.
        for o in &overrides {
            let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
            if key == "model" || key.starts_with("model.") {
                bail!(
                    "`{key}`: the model's shape cannot change on --resume (the run's checkpoints \
                     could not load); start a new run instead"
                );
            }
        }
    }
    let recipe: Recipe = recipe::load_all(&recipe_file, &overrides)?;
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", recipe_file.display()))?;
    let t = &recipe.train;
    if world.is_root()
        && t.device == anvil_models::device::DeviceKind::Cpu
        && t.precision != anvil_models::Precision::F32
    {
        // Measured (docs/gpu.md): 0.41x (bf16) and 0.21x (f16) of f32's tokens/s on the CPU.
        eprintln!(
            "note: train.precision = {} on the cpu emulates the GPU's arithmetic: Burn's flex \
             converts its {0} products through f32 and Anvil's fused f32 kernels stand aside, so \
             it trains slower than f32 (docs/gpu.md)",
            t.precision
        );
    }
    match (a.threads, recipe.train.threads, world.default_threads()) {
        (Some(t), _, _) => super::set_threads(Some(t), "--threads")?,
        (None, 0, Some(t)) => super::set_threads(Some(t), "cores per rank")?,
        (None, t, _) => super::set_threads(Some(t), "train.threads")?,
    }
    let opts = RunOptions {
        recipe_path: Some(recipe_file.clone()),
        command_line: std::env::args().collect(),
        resume: a.resume.clone(),
        overrides,
        world: world.clone(),
    };
    Ok((recipe, opts))
}

/// Returns whether the run was interrupted.
fn train_run_on(a: RunArgs, world: &World) -> Result<bool> {
    // Every rank learns whether any rank could not read its recipe.
    let prepared = prepare(a, world).map_err(|e| anvil_train::TrainError::Recipe(format!("{e:#}")));
    let (recipe, opts) = world.agree(prepared)?;
    let summary = match anvil_train::run(recipe, opts) {
        Err(e @ anvil_train::TrainError::AlreadyFinished { .. }) => {
            if world.is_root() {
                println!("{e}");
            }
            return Ok(false);
        }
        r => r?,
    };
    if !world.is_root() {
        return Ok(summary.interrupted);
    }
    let s = &summary;
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let trainable = if s.trainable_parameters == s.parameters {
        String::new()
    } else {
        format!(", {} trainable", s.trainable_parameters)
    };
    println!(
        "{} {} steps in {:.1} s ({:.0} tokens/s, {} parameters{trainable})",
        if s.interrupted {
            "interrupted after"
        } else {
            "trained"
        },
        s.steps,
        s.seconds,
        s.tokens_per_second,
        s.parameters
    );
    if s.reward_mean.is_some() || s.heldout_pass_at_1.is_some() {
        println!(
            "reward (last step) {} · held-out pass@1 {} at the start, {} at the end",
            fmt(s.reward_mean),
            fmt(s.heldout_pass_at_1_start),
            fmt(s.heldout_pass_at_1)
        );
    } else {
        println!(
            "train loss {} · val loss {} · val ppl {} · val bits/byte {} · best val loss {}",
            fmt(s.final_train_loss),
            fmt(s.final_val_loss),
            fmt(s.val_perplexity),
            fmt(s.val_bits_per_byte),
            fmt(s.best_val_loss)
        );
    }
    println!("run folder: {}", s.run_dir.display());
    if let Some(c) = &s.last_checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(s.interrupted)
}
