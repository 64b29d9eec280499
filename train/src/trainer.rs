//! The pretraining loop, readable in one sitting: data → model → (micro-batches → backward →
//! accumulate) → clip → AdamW → log / validate / checkpoint, until `train.max_steps`.

use crate::checkpoint::{self, TrainerState};
use crate::loader::{DataPosition, RowStream, TokenRows};
use crate::optim::{AdamW, GradAccumulator, lr_at};
use crate::recipe::Recipe;
use crate::runlog::RunLog;
use crate::{TrainError, signals};
use anvil_data::shard::Split;
use anvil_models::memory::{self, Workload};
use anvil_models::{Llama, LlamaConfig, TokenBatch};
use anvil_tracking::RunLock;
use burn::module::Module;
use burn::tensor::Device;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a run was started.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The recipe file (its name names the run).
    pub recipe_path: Option<PathBuf>,
    /// The command line, for the run's tags.
    pub command_line: Vec<String>,
    /// Continue this run folder from its newest checkpoint.
    pub resume: Option<PathBuf>,
    /// The command line's `section.key=value` overrides (already applied to the recipe); a
    /// resume records them as a tag.
    pub overrides: Vec<String>,
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub steps: usize,
    pub interrupted: bool,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub val_perplexity: Option<f64>,
    pub val_bits_per_byte: Option<f64>,
    pub tokens_seen: u64,
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub parameters: usize,
    pub last_checkpoint: Option<PathBuf>,
}

/// Validation numbers.
#[derive(Debug, Clone, Copy)]
pub struct ValMetrics {
    pub loss: f64,
    pub perplexity: f64,
    pub bits_per_byte: f64,
}

/// Mean next-token loss over the first `batches` micro-batches of `rows` (all when 0), with
/// perplexity and bits per byte (`token_bytes[id]` = bytes of text per token).
pub fn validate(
    model: &Llama,
    rows: &TokenRows,
    batch_size: usize,
    batches: usize,
    token_bytes: &[u32],
) -> Option<ValMetrics> {
    let n = rows.len();
    let limit = if batches == 0 {
        n
    } else {
        (batches * batch_size).min(n)
    };
    let (mut nll, mut targets, mut bytes) = (0f64, 0usize, 0u64);
    let mut start = 0;
    while start < limit {
        let idx: Vec<usize> = (start..(start + batch_size).min(limit)).collect();
        start += idx.len();
        let batch = rows.batch(&idx);
        let out = model.loss(&batch);
        nll += out.nll_sum.into_scalar::<f32>() as f64;
        targets += out.n_targets;
        bytes += target_bytes(&batch, token_bytes);
    }
    (targets > 0).then(|| {
        let loss = nll / targets as f64;
        ValMetrics {
            loss,
            perplexity: loss.exp(),
            bits_per_byte: nll / std::f64::consts::LN_2 / bytes.max(1) as f64,
        }
    })
}

/// Text bytes of the tokens a batch predicts.
fn target_bytes(batch: &TokenBatch, token_bytes: &[u32]) -> u64 {
    let (targets, weights, _) = batch.targets();
    targets
        .iter()
        .zip(&weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(&t, _)| token_bytes.get(t as usize).copied().unwrap_or(0) as u64)
        .sum()
}

/// Runs (or resumes) the recipe to the end, or until interrupted.
pub fn run(mut recipe: Recipe, opts: RunOptions) -> Result<RunSummary, TrainError> {
    recipe.validate()?;
    // A resume starts from the run's newest checkpoint; one already at train.max_steps has
    // nothing to do, and changes nothing.
    // One writer per run folder, taken before anything in it is read or changed (a second
    // `--resume` of the same run would prune and read the first one's checkpoints).
    let mut lock = None;
    let resume_from = match &opts.resume {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(TrainError::Recipe(format!(
                    "{}: no such run folder",
                    dir.display()
                )));
            }
            lock = Some(RunLock::acquire(dir)?);
            let ckpt_dir = dir.join("checkpoints");
            clean_checkpoints(&ckpt_dir)?;
            let (_, latest) = checkpoint::list(&ckpt_dir).pop().ok_or_else(|| {
                TrainError::Recipe(format!(
                    "{}: no checkpoint to resume from",
                    ckpt_dir.display()
                ))
            })?;
            // A kill between saving a checkpoint and pruning the oldest leaves one too many,
            // also when that was the run's last save.
            checkpoint::prune(&ckpt_dir, recipe.checkpoint.keep_last)?;
            let state = checkpoint::read_state(&latest)?;
            if state.step >= recipe.train.max_steps {
                return Err(TrainError::AlreadyFinished { step: state.step });
            }
            Some((dir.clone(), latest, state))
        }
        None => None,
    };
    let data = anvil_data::pipeline::run(&recipe.data, &opts.command_line)?;
    let manifest = anvil_data::tokenize::read_manifest(&data.tokens)?;
    resolve_model_shape(&mut recipe.model, manifest.vocab_size, manifest.seq_len)?;
    // Before anything is allocated: a model that cannot fit is one line, not an abort in the
    // allocator or the machine's OOM killer.
    let workload = Workload::Train {
        batch: recipe.train.batch_size,
        seq_len: manifest.seq_len,
    };
    memory::check(&recipe.model, workload).map_err(|e| {
        TrainError::Recipe(format!(
            "`{}`: the model {e}",
            e.estimate.culprit.recipe_key()
        ))
    })?;
    let tokenizer = anvil_data::tokenizer::load(&data.tokenizer)?;
    let token_bytes = anvil_data::tokenizer::token_byte_lengths(&tokenizer);
    let vocab = recipe.model.vocab_size;
    let train_rows = TokenRows::load(&data.tokens, Split::Train, vocab)?;
    let val_rows = TokenRows::load(&data.tokens, Split::Val, vocab)?;
    if train_rows.len() < recipe.train.batch_size {
        return Err(TrainError::Recipe(format!(
            "{}: {} training rows, fewer than train.batch_size = {}",
            data.tokens.display(),
            train_rows.len(),
            recipe.train.batch_size
        )));
    }

    let device = Device::default();
    device.seed(recipe.train.seed);
    let mut model = recipe.model.init(&device.clone().autodiff());
    let mut opt = AdamW::new(recipe.optim.clone());
    let mut state = TrainerState {
        step: 0,
        optimizer_step: 0,
        position: DataPosition::default(),
        best_val_loss: None,
        tokens_seen: 0,
    };

    let (run_dir, log) = match resume_from {
        Some((dir, latest, resumed)) => {
            state = resumed;
            model = anvil_models::store::load_weights(model, &latest)
                .map_err(checkpoint::CheckpointError::from)?;
            checkpoint::load_optimizer(&mut opt, &latest, state.optimizer_step, &device)?;
            let log = RunLog::resume(&dir, &recipe, &opts)?;
            (dir, log)
        }
        None => {
            let dir = new_run_dir(&recipe, &opts);
            std::fs::create_dir_all(&dir).map_err(|e| anvil_tracking::TrackingError::io(&dir, e))?;
            lock = Some(RunLock::acquire(&dir)?);
            let log = RunLog::create(&dir, &recipe, &opts)?;
            // A folder that held a run before (its run.json deleted) may hold a killed writer's.
            clean_checkpoints(&dir.join("checkpoints"))?;
            (dir, log)
        }
    };
    let ckpt_dir = run_dir.join("checkpoints");
    log.artifact_copy(&data.tokenizer, "tokenizer.json")?;

    let parameters = model.num_params();
    let t = recipe.train.clone();
    let mut stream = RowStream::new(train_rows.len(), t.seed, state.position);
    let bar = anvil_data::progress::bar(t.max_steps as u64, "train", false);
    bar.set_position(state.step as u64);
    let started = Instant::now();
    let (mut window_tokens, mut window_start) = (0u64, Instant::now());
    let mut trained_tokens = 0u64;
    let mut last_loss = None;
    let mut last_val: Option<ValMetrics> = None;
    let mut last_ckpt = None;
    let mut interrupted = false;
    signals::install();

    while state.step < t.max_steps {
        // One optimizer step: all micro-batches first, so the loss can be normalized by the
        // target tokens of the whole step.
        let micro: Vec<TokenBatch> = (0..t.grad_accum)
            .map(|_| train_rows.batch(&stream.next_rows(t.batch_size)))
            .collect();
        let step_targets: usize = micro.iter().map(|b| b.targets().2).sum::<usize>().max(1);
        let mut grads = GradAccumulator::default();
        let mut nll = 0f64;
        let mut loads: Vec<Vec<f32>> = Vec::new();
        for batch in &micro {
            let out = model.loss(batch);
            let share = out.n_targets as f64 / step_targets as f64;
            let mut loss = out.nll_sum / step_targets as f64;
            if let Some(aux) = out.aux_loss {
                loss = loss + aux * share;
            }
            nll += loss.clone().into_scalar::<f32>() as f64;
            grads.add(&model, &loss.backward());
            loads = out.expert_load;
        }
        let grad_norm = grads.clip_global_norm(recipe.optim.grad_clip);
        let lr = lr_at(state.step, recipe.optim.lr, &recipe.schedule, t.max_steps);
        model = opt.step(model, lr, &mut grads);
        state.step += 1;
        state.optimizer_step = opt.step;
        state.position = stream.position;
        // Throughput counts input tokens (rows × length), as PyTorch benchmarks do.
        let step_tokens = (t.grad_accum * t.batch_size * train_rows.seq_len) as u64;
        state.tokens_seen += step_tokens;
        trained_tokens += step_tokens;
        window_tokens += step_tokens;
        last_loss = Some(nll);
        bar.set_position(state.step as u64);

        if state.step % t.log_every == 0 || state.step == t.max_steps {
            let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
            (window_tokens, window_start) = (0, Instant::now());
            let mut metrics = vec![
                ("train/loss".to_string(), nll),
                ("train/lr".to_string(), lr),
                ("train/grad_norm".to_string(), grad_norm),
                ("train/tokens_per_s".to_string(), tps),
                ("train/tokens_seen".to_string(), state.tokens_seen as f64),
            ];
            for (layer, load) in loads.iter().enumerate() {
                for (e, f) in load.iter().enumerate() {
                    metrics.push((format!("moe/layer{layer}/expert{e}"), *f as f64));
                }
            }
            log.metrics(state.step, &metrics)?;
            bar.set_message(format!("loss {nll:.3} · {tps:.0} tok/s"));
        }

        let finished = state.step == t.max_steps;
        // A signal during the last step changes nothing: the run completes normally.
        let stop_now = signals::interrupted() && !finished;
        let eval_due = finished || (recipe.eval.every > 0 && state.step % recipe.eval.every == 0);
        let mut new_best = false;
        if eval_due && !stop_now {
            let valid = model.valid();
            if let Some(v) = validate(
                &valid,
                &val_rows,
                t.batch_size,
                recipe.eval.batches,
                &token_bytes,
            ) {
                log.metrics(
                    state.step,
                    &[
                        ("val/loss".into(), v.loss),
                        ("val/perplexity".into(), v.perplexity),
                        ("val/bits_per_byte".into(), v.bits_per_byte),
                    ],
                )?;
                if state.best_val_loss.is_none_or(|b| v.loss < b) {
                    state.best_val_loss = Some(v.loss);
                    new_best = true;
                }
                last_val = Some(v);
            }
        }
        // A new best validation loss is saved whatever the step, or `best/` could miss it (and,
        // with the best loss already recorded, every later checkpoint too).
        let ckpt_due = finished
            || stop_now
            || (new_best && recipe.checkpoint.keep_best)
            || (recipe.checkpoint.every > 0 && state.step % recipe.checkpoint.every == 0);
        if ckpt_due {
            let path = checkpoint::save(&ckpt_dir, &model, &opt, &state)?;
            if new_best && recipe.checkpoint.keep_best {
                checkpoint::mark_best(&ckpt_dir, &path)?;
            }
            checkpoint::prune(&ckpt_dir, recipe.checkpoint.keep_last)?;
            last_ckpt = Some(path);
        }
        if stop_now {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();

    let seconds = started.elapsed().as_secs_f64();
    let summary = RunSummary {
        run_dir: run_dir.clone(),
        steps: state.step,
        interrupted,
        final_train_loss: last_loss,
        final_val_loss: last_val.map(|v| v.loss),
        best_val_loss: state.best_val_loss,
        val_perplexity: last_val.map(|v| v.perplexity),
        val_bits_per_byte: last_val.map(|v| v.bits_per_byte),
        tokens_seen: state.tokens_seen,
        tokens_per_second: trained_tokens as f64 / seconds.max(1e-9),
        seconds,
        parameters,
        last_checkpoint: last_ckpt,
    };
    log.finish(&summary)?;
    drop(lock);
    Ok(summary)
}

/// Removes what a killed checkpoint write left (restoring `best/` if it was mid-swap), saying so
/// on stderr in one line.
fn clean_checkpoints(dir: &Path) -> Result<(), TrainError> {
    let c = checkpoint::clean_leftovers(dir)?;
    let name = |p: &PathBuf| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut said = Vec::new();
    if let Some(old) = &c.restored_best {
        said.push(format!("restored best/ from {}", name(old)));
    }
    if !c.removed.is_empty() {
        let names: Vec<String> = c.removed.iter().map(name).collect();
        said.push(format!("removed {}", names.join(", ")));
    }
    if !c.kept.is_empty() {
        let names: Vec<String> = c.kept.iter().map(name).collect();
        said.push(format!(
            "left {} (their process is running)",
            names.join(", ")
        ));
    }
    if !said.is_empty() {
        eprintln!(
            "note: {}: unfinished checkpoint writes of a killed run: {}",
            dir.display(),
            said.join("; ")
        );
    }
    Ok(())
}

/// Fills in what the data decides (vocabulary size) and checks what it constrains.
fn resolve_model_shape(
    model: &mut LlamaConfig,
    vocab: usize,
    seq_len: usize,
) -> Result<(), TrainError> {
    if model.vocab_size == 0 {
        model.vocab_size = vocab;
    } else if let Some(why) = anvil_models::vocab_mismatch(vocab, model.vocab_size) {
        return Err(TrainError::Recipe(format!(
            "`model.vocab_size` = {}: {why} (0 takes the tokenizer's size)",
            model.vocab_size
        )));
    }
    if seq_len > model.max_seq_len {
        return Err(TrainError::Recipe(format!(
            "`model.max_seq_len`: {} is shorter than the data's rows of {seq_len} tokens",
            model.max_seq_len
        )));
    }
    Ok(())
}

fn new_run_dir(recipe: &Recipe, opts: &RunOptions) -> PathBuf {
    let name = recipe.output.name.clone().unwrap_or_else(|| {
        let stem = opts
            .recipe_path
            .as_deref()
            .and_then(Path::file_stem)
            .and_then(|s| s.to_str())
            .unwrap_or("run");
        format!("{stem}-{}", crate::runlog::timestamp())
    });
    recipe.output.dir.join(name)
}
