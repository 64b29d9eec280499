//! The pretraining loop, readable in one sitting: data → model → (micro-batches → backward →
//! accumulate) → clip → AdamW → log / validate / checkpoint, until `train.max_steps`.

use crate::checkpoint::{self, TrainerState, Weights};
use crate::dist::{DataParallel, World, optimizer_step, scaled};
use crate::loader::{RowStream, TokenRows};
use crate::optim::{AdamW, GradAccumulator, lr_at};
use crate::recipe::Recipe;
use crate::runlog::RunLog;
use crate::{TrainError, signals};
use anvil_data::shard::Split;
use anvil_models::memory::{self, Workload};
use anvil_models::{Llama, LlamaConfig, TokenBatch, lora, peft};
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
    /// The processes of the run: this one, or the ranks of an MPI job (`crate::dist`).
    pub world: World,
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
    /// Parameters the optimizer updates (the adapters' with LoRA).
    pub trainable_parameters: usize,
    pub last_checkpoint: Option<PathBuf>,
    /// RL runs: the last step's mean reward, and held-out greedy pass@1 before the first step
    /// and after the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_pass_at_1_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_pass_at_1: Option<f64>,
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
    validate_on(
        &World::single(),
        model,
        rows,
        batch_size,
        batches,
        token_bytes,
    )
}

/// [`validate`] with the micro-batches dealt out to `world`'s ranks in turn and their sums
/// added up (every rank gets the same numbers).
pub fn validate_on(
    world: &World,
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
    for k in 0.. {
        if start >= limit {
            break;
        }
        let idx: Vec<usize> = (start..(start + batch_size).min(limit)).collect();
        start += idx.len();
        if k % world.size() != world.rank() {
            continue;
        }
        // The denoiser's validation masks depend on the batch alone: the same every evaluation.
        let batch = model_batch(&model.config, rows.batch(&idx), derive_seed(0, 0, k));
        let out = model.loss(&batch);
        nll += out.nll_sum.into_scalar::<f32>() as f64;
        targets += out.n_targets;
        bytes += target_bytes(&batch, token_bytes);
    }
    let (nll, targets, bytes) = match world.is_distributed() {
        false => (nll, targets, bytes),
        true => {
            let s = world.sum(&[nll, targets as f64, bytes as f64]);
            (s[0], s[1] as usize, s[2] as u64)
        }
    };
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
/// The batch a model trains on: the diffusion denoiser's masked copy of the rows (all its
/// randomness from `seed`), or the rows as they are.
pub fn model_batch(config: &LlamaConfig, batch: TokenBatch, seed: u64) -> TokenBatch {
    match &config.diffusion {
        Some(d) => {
            anvil_models::diffusion::noise_batch(&batch, d, anvil_data::tokenizer::MASK_ID, seed)
        }
        None => batch,
    }
}

/// A seed per (run seed, step, slot), so what a step draws does not depend on what ran before
/// (a resumed run draws the same).
pub(crate) fn derive_seed(seed: u64, step: usize, slot: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((slot as u64) << 40);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn target_bytes(batch: &TokenBatch, token_bytes: &[u32]) -> u64 {
    batch
        .scored_ids()
        .iter()
        .map(|&t| token_bytes.get(t as usize).copied().unwrap_or(0) as u64)
        .sum()
}

/// Runs (or resumes) the recipe to the end, or until interrupted: setup, then the step and the
/// cadence after it, until `train.max_steps` or a signal.
pub fn run(recipe: Recipe, opts: RunOptions) -> Result<RunSummary, TrainError> {
    if recipe.rl.is_some() {
        return crate::rl::run(recipe, opts);
    }
    let (mut t, mut model) = Trainer::setup(recipe, opts)?;
    // Training and validation forward passes alike run in the recipe's precision.
    let _cast = anvil_models::precision::autocast(t.recipe.train.precision);
    signals::install();
    loop {
        let step;
        (model, step) = t.step(model);
        match t.after_step(&model, &step)? {
            Flow::Continue => {}
            Flow::Finished => return t.finish(false),
            Flow::Interrupted => return t.finish(true),
        }
    }
}

/// What one optimizer step did.
struct StepReport {
    /// The step's mean loss over its target tokens (with the auxiliary losses).
    loss: f64,
    lr: f64,
    grad_norm: f64,
    /// Per MoE layer, the last micro-batch's expert load (rank 0's).
    expert_load: Vec<Vec<f32>>,
    /// Whether a signal reached this process or, in a distributed run, any rank.
    interrupted: bool,
}

/// What the cadence decided after a step.
enum Flow {
    Continue,
    Finished,
    Interrupted,
}

/// Everything a run holds between steps but the model, which AdamW consumes and returns (its
/// in-place update needs the only handle to each parameter).
struct Trainer {
    recipe: Recipe,
    opt: AdamW,
    state: TrainerState,
    train_rows: TokenRows,
    val_rows: TokenRows,
    /// Text bytes per token id, for bits per byte.
    token_bytes: Vec<u32>,
    stream: RowStream,
    /// Several ranks: the gradient exchange and the sharded optimizer.
    dp: Option<DataParallel>,
    world: World,
    run_dir: PathBuf,
    parameters: usize,
    trainable_parameters: usize,
    /// With LoRA: the frozen base's folder, which adapter checkpoints refer to, and its
    /// fingerprint.
    base_ref: Option<(String, String)>,
    bar: indicatif::ProgressBar,
    started: Instant,
    /// Tokens and start of the current throughput window.
    window: (u64, Instant),
    trained_tokens: u64,
    last_loss: Option<f64>,
    last_val: Option<ValMetrics>,
    last_ckpt: Option<PathBuf>,
    /// Rank 0's alone (other ranks write nothing). Dropped before the lock (fields drop in
    /// order): a failed run is marked FAILED while this process still owns the folder.
    log: Option<RunLog>,
    _lock: Option<RunLock>,
}

impl Trainer {
    /// The run folder (new, or resumed from its newest checkpoint), the data, the model (fresh,
    /// pretrained from `model.init_from`, or the checkpoint's) and the optimizer. Everything a
    /// user can get wrong is refused here, before a new run folder exists.
    ///
    /// With several ranks, rank 0 builds (or finds) the data first while the others wait, then
    /// they find it in the cache (building it at once would race on the cache folder); rank 0
    /// alone opens the run folder, and then sends every rank its weights, optimizer state and
    /// trainer state. Each phase ends with the ranks agreeing, so an error stops all of them.
    fn setup(recipe: Recipe, opts: RunOptions) -> Result<(Trainer, Llama), TrainError> {
        let world = opts.world.clone();
        world.set_timeout(recipe.distributed.timeout);
        let staged = world.is_root().then(|| stage(recipe.clone(), &opts));
        let staged = world.agree_untimed(staged.transpose())?;
        let built = staged
            .map_or_else(|| stage(recipe, &opts), Ok)
            .and_then(|s| Self::build(s, opts));
        let (mut t, mut model) = world.agree(built)?;
        if world.is_distributed() {
            t.state = world.broadcast_json(t.state.clone());
            t.run_dir = world.broadcast_json(t.run_dir.clone());
            t.stream = RowStream::new(t.train_rows.len(), t.recipe.train.seed, t.state.position);
            let r = &t.recipe;
            let mut dp = DataParallel::new(world.clone(), &model, &r.distributed, &r.optim);
            model = dp.sync_start(model, &mut t.opt, &r.optim);
            t.dp = Some(dp);
        }
        Ok((t, model))
    }

    fn build(staged: Staged, opts: RunOptions) -> Result<(Trainer, Llama), TrainError> {
        let Staged {
            mut recipe,
            resumed,
            pretrained,
            data,
        } = staged;
        let world = opts.world.clone();
        let device = recipe.train.device()?;
        let manifest = anvil_data::tokenize::read_manifest(&data.tokens)?;
        resolve_model_shape(&mut recipe.model, &manifest)?;
        // Before anything is allocated: a model that cannot fit is one line, not an abort in
        // the allocator or the machine's OOM killer.
        let (batch, seq_len) = (recipe.train.batch_size, manifest.seq_len);
        let frozen = |adapters| Workload::TrainFrozen {
            batch,
            seq_len,
            adapters,
        };
        let workload = match &recipe.lora {
            Some(cfg) => frozen(cfg.parameter_count(&recipe.model)),
            None => Workload::Train { batch, seq_len },
        };
        memory::check(&recipe.model, workload).map_err(|e| {
            // Adapters that alone make it too large name their rank.
            let adapters_too_large =
                recipe.lora.is_some() && memory::check(&recipe.model, frozen(0)).is_ok();
            let key = if adapters_too_large {
                "lora.r"
            } else {
                e.estimate.culprit.recipe_key()
            };
            TrainError::Recipe(format!("`{key}`: the model {e}"))
        })?;
        let tokenizer = anvil_data::tokenizer::load(&data.tokenizer)?;
        let token_bytes = anvil_data::tokenizer::token_byte_lengths(&tokenizer);
        let train_rows = TokenRows::load_for(&data.tokens, Split::Train, &recipe.model)?;
        let val_rows = TokenRows::load_for(&data.tokens, Split::Val, &recipe.model)?;
        let global_batch = recipe.train.batch_size * world.size();
        if train_rows.len() < global_batch {
            let per_rank = match world.size() {
                1 => String::new(),
                n => format!(" × {n} ranks"),
            };
            return Err(TrainError::Recipe(format!(
                "{}: {} training rows, fewer than train.batch_size = {}{per_rank}",
                data.tokens.display(),
                train_rows.len(),
                recipe.train.batch_size
            )));
        }

        device.seed(recipe.train.seed);
        let train_device = device.clone().autodiff();
        let mut opt = AdamW::new(recipe.optim.clone());
        let mut state = TrainerState::default();
        let (mut base_ref, mut start, mut parameters) = (None, None, None);
        if let Some(loaded) = pretrained {
            let (m, base, n) = make_trainable(loaded, recipe.lora.as_ref(), &train_device);
            (base_ref, start, parameters) = (base, Some(m), Some(n));
        }
        let model = start.unwrap_or_else(|| init_model(&recipe.model, &device, recipe.train.seed));
        let (model, run_dir, log, lock) = open_run(
            &recipe,
            &opts,
            resumed,
            model,
            base_ref.as_ref(),
            (&mut opt, &mut state),
            &device,
        )?;
        if let Some(log) = &log {
            log.artifact_copy(&data.tokenizer, "tokenizer.json")?;
        }

        let t = &recipe.train;
        let stream = RowStream::new(train_rows.len(), t.seed, state.position);
        let bar = match world.is_root() {
            true => anvil_data::progress::bar(t.max_steps as u64, "train", false),
            false => indicatif::ProgressBar::hidden(),
        };
        bar.set_position(state.step as u64);
        let trainer = Trainer {
            parameters: parameters.unwrap_or_else(|| model.num_params()),
            trainable_parameters: match recipe.lora {
                Some(_) => lora::adapter_parameter_count(&model),
                None => model.num_params(),
            },
            base_ref: recipe.lora.as_ref().and(base_ref),
            opt,
            state,
            train_rows,
            val_rows,
            token_bytes,
            stream,
            dp: None,
            world,
            run_dir,
            bar,
            started: Instant::now(),
            window: (0, Instant::now()),
            trained_tokens: 0,
            last_loss: None,
            last_val: None,
            last_ckpt: None,
            log,
            _lock: lock,
            recipe,
        };
        Ok((trainer, model))
    }

    /// One optimizer step: all micro-batches first, so the loss can be normalized by the target
    /// tokens of the whole step; then clipping and AdamW. With several ranks, each micro-batch's
    /// rows are dealt out (rank r takes the r-th `batch_size` of every `ranks × batch_size`), the
    /// target count is the ranks' sum, and the gradients are summed before the step.
    fn step(&mut self, model: Llama) -> (Llama, StepReport) {
        let t = &self.recipe.train;
        let (rank, ranks) = (self.world.rank(), self.world.size());
        let micro: Vec<TokenBatch> = (0..t.grad_accum)
            .map(|k| {
                let rows = self.stream.next_rows(t.batch_size * ranks);
                let batch = self
                    .train_rows
                    .batch(&rows[rank * t.batch_size..(rank + 1) * t.batch_size]);
                let seed = derive_seed(t.seed, self.state.step, k * ranks + rank);
                model_batch(&model.config, batch, seed)
            })
            .collect();
        let mut step_targets: usize = micro.iter().map(|b| b.targets().2).sum();
        if self.dp.is_some() {
            step_targets = self.world.sum(&[step_targets as f64])[0] as usize;
        }
        let step_targets = step_targets.max(1);
        let mut grads = GradAccumulator::default();
        let mut loss_sum = 0f64;
        let mut expert_load = Vec::new();
        for batch in &micro {
            let out = model.loss(batch);
            let share = out.n_targets as f64 / step_targets as f64;
            let mut loss = out.nll_sum / step_targets as f64;
            if let Some(aux) = out.aux_loss {
                loss = loss + aux * share;
            }
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            grads.add(
                &model,
                &scaled(loss, self.state.loss_scaler.as_ref()).backward(),
            );
            expert_load = out.expert_load;
        }
        let lr = lr_at(
            self.state.step,
            self.recipe.optim.lr,
            &self.recipe.schedule,
            t.max_steps,
        );
        let mut interrupted = signals::interrupted();
        if self.dp.is_some() {
            // One message for the step's loss and for a signal on any rank.
            let s = self
                .world
                .sum(&[loss_sum, f64::from(u8::from(interrupted))]);
            (loss_sum, interrupted) = (s[0], s[1] > 0.0);
        }
        let clip = self.recipe.optim.grad_clip;
        let (model, grad_norm) = optimizer_step(
            self.dp.as_mut(),
            &mut self.opt,
            model,
            &mut grads,
            (lr, clip),
            self.state.loss_scaler.as_mut(),
        );
        self.state.step += 1;
        self.state.optimizer_step = self.opt.step;
        self.state.position = self.stream.position;
        // Throughput counts input tokens (rows × length, all ranks'), as PyTorch benchmarks do.
        let t = &self.recipe.train;
        let step_tokens = (t.grad_accum * t.batch_size * ranks * self.train_rows.seq_len) as u64;
        self.state.tokens_seen += step_tokens;
        self.trained_tokens += step_tokens;
        self.window.0 += step_tokens;
        self.last_loss = Some(loss_sum);
        self.bar.set_position(self.state.step as u64);
        let report = StepReport {
            loss: loss_sum,
            lr,
            grad_norm,
            expert_load,
            interrupted,
        };
        (model, report)
    }

    /// The cadence after a step: log, validate, checkpoint, and whether to go on.
    fn after_step(&mut self, model: &Llama, step: &StepReport) -> Result<Flow, TrainError> {
        let (n, max) = (self.state.step, self.recipe.train.max_steps);
        if n % self.recipe.train.log_every == 0 || n == max {
            self.log_step(step)?;
        }
        let finished = n == max;
        // A signal during the last step changes nothing: the run completes normally.
        let stop_now = step.interrupted && !finished;
        let every = |k: usize| k > 0 && n % k == 0;
        let mut new_best = false;
        if (finished || every(self.recipe.eval.every)) && !stop_now {
            new_best = self.validate(model)?;
        }
        // A new best validation loss is saved whatever the step, or `best/` could miss it (and,
        // with the best loss already recorded, every later checkpoint too).
        let c = &self.recipe.checkpoint;
        if finished || stop_now || (new_best && c.keep_best) || every(c.every) {
            let dir = self.run_dir.join("checkpoints");
            let weights = match (&self.recipe.lora, &self.base_ref) {
                (Some(config), Some((base, fingerprint))) => Weights::Adapter {
                    config,
                    base,
                    fingerprint,
                },
                _ => Weights::Full,
            };
            // SFT taught completions after the prompt encoded alone: no token healing.
            let generation = anvil_models::generation::GenerationConfig {
                token_healing: (!self.recipe.data.sft.is_empty()).then_some(false),
            };
            let saved = save_on_root(
                &self.world,
                self.dp.as_mut(),
                &mut self.opt,
                &self.state,
                |opt, state| checkpoint::save(&dir, model, weights, &generation, opt, state),
            )?;
            if let Some(path) = saved {
                if new_best && c.keep_best {
                    checkpoint::mark_best(&dir, &path)?;
                }
                checkpoint::prune(&dir, c.keep_last)?;
                self.last_ckpt = Some(path);
            }
        }
        Ok(if stop_now {
            Flow::Interrupted
        } else if finished {
            Flow::Finished
        } else {
            Flow::Continue
        })
    }

    fn log_step(&mut self, step: &StepReport) -> Result<(), TrainError> {
        let tps = self.window.0 as f64 / self.window.1.elapsed().as_secs_f64().max(1e-9);
        self.window = (0, Instant::now());
        let mut metrics = vec![
            ("train/loss".to_string(), step.loss),
            ("train/lr".to_string(), step.lr),
            ("train/grad_norm".to_string(), step.grad_norm),
            ("train/tokens_per_s".to_string(), tps),
            (
                "train/tokens_seen".to_string(),
                self.state.tokens_seen as f64,
            ),
        ];
        if let Some(s) = &self.state.loss_scaler {
            metrics.push(("train/loss_scale".into(), s.scale));
            metrics.push(("train/skipped_steps".into(), s.skipped as f64));
        }
        for (layer, load) in step.expert_load.iter().enumerate() {
            for (e, f) in load.iter().enumerate() {
                metrics.push((format!("moe/layer{layer}/expert{e}"), *f as f64));
            }
        }
        if let Some(dp) = &mut self.dp {
            let c = dp.take_stats();
            let per_step = |x: f64| x / c.steps.max(1) as f64;
            metrics.push(("dist/comm_s".into(), per_step(c.seconds)));
            metrics.push(("dist/comm_bytes".into(), per_step(c.bytes as f64)));
            metrics.push(("dist/optimizer_values".into(), dp.optimizer_share() as f64));
        }
        let Some(log) = &self.log else {
            return Ok(());
        };
        log.metrics(self.state.step, &metrics)?;
        self.bar
            .set_message(format!("loss {:.3} · {tps:.0} tok/s", step.loss));
        Ok(())
    }

    /// Validates the current model; returns whether its loss is the best so far.
    fn validate(&mut self, model: &Llama) -> Result<bool, TrainError> {
        let valid = model.valid();
        let e = &self.recipe.eval;
        let Some(v) = validate_on(
            &self.world,
            &valid,
            &self.val_rows,
            self.recipe.train.batch_size,
            e.batches,
            &self.token_bytes,
        ) else {
            return Ok(false);
        };
        if let Some(log) = &self.log {
            log.metrics(
                self.state.step,
                &[
                    ("val/loss".into(), v.loss),
                    ("val/perplexity".into(), v.perplexity),
                    ("val/bits_per_byte".into(), v.bits_per_byte),
                ],
            )?;
        }
        self.last_val = Some(v);
        let best = self.state.best_val_loss.is_none_or(|b| v.loss < b);
        if best {
            self.state.best_val_loss = Some(v.loss);
        }
        Ok(best)
    }

    fn finish(self, interrupted: bool) -> Result<RunSummary, TrainError> {
        self.bar.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        let summary = RunSummary {
            run_dir: self.run_dir.clone(),
            steps: self.state.step,
            interrupted,
            final_train_loss: self.last_loss,
            final_val_loss: self.last_val.map(|v| v.loss),
            best_val_loss: self.state.best_val_loss,
            val_perplexity: self.last_val.map(|v| v.perplexity),
            val_bits_per_byte: self.last_val.map(|v| v.bits_per_byte),
            tokens_seen: self.state.tokens_seen,
            tokens_per_second: self.trained_tokens as f64 / seconds.max(1e-9),
            seconds,
            parameters: self.parameters,
            trainable_parameters: self.trainable_parameters,
            last_checkpoint: self.last_ckpt.clone(),
            reward_mean: None,
            heldout_pass_at_1_start: None,
            heldout_pass_at_1: None,
        };
        if let Some(log) = &self.log {
            log.finish(&summary)?;
        }
        Ok(summary)
    }
}

/// Runs `save` (a checkpoint write) on rank 0 with the state stamped with the rank count, and
/// returns its path there. Every rank calls it: ZeRO-1 gathers the optimizer's shards for it.
pub(crate) fn save_on_root(
    world: &World,
    dp: Option<&mut DataParallel>,
    opt: &mut AdamW,
    state: &TrainerState,
    save: impl FnOnce(&AdamW, &TrainerState) -> Result<PathBuf, checkpoint::CheckpointError>,
) -> Result<Option<PathBuf>, checkpoint::CheckpointError> {
    let state = TrainerState {
        world_size: (world.size() > 1).then_some(world.size()),
        ..state.clone()
    };
    let root = world.is_root();
    let run = |opt: &AdamW| match root {
        true => save(opt, &state).map(Some),
        false => Ok(None),
    };
    match dp {
        Some(dp) => dp.with_full_optimizer(opt, run),
        None => run(opt),
    }
}

/// What a run starts from, before its model exists: the recipe (its shape resolved from a
/// pretrained model), the run being resumed (rank 0's), the pretrained model, the data.
struct Staged {
    recipe: Recipe,
    resumed: Option<Resumed>,
    pretrained: Option<anvil_infer::Loaded>,
    data: anvil_data::pipeline::PreparedData,
}

/// Validates the recipe, opens the run to resume (rank 0), loads the pretrained model and
/// builds (or finds) the data.
fn stage(mut recipe: Recipe, opts: &RunOptions) -> Result<Staged, TrainError> {
    recipe.validate()?;
    // One writer per run folder, taken before anything in it is read or changed (a second
    // `--resume` of the same run would prune and read the first one's checkpoints).
    let resumed = match (&opts.resume, opts.world.is_root()) {
        (Some(dir), true) => Some(open_resume(dir, &recipe, &opts.world)?),
        _ => None,
    };
    let device = recipe.train.device()?;
    // The pretrained model starts a new run; a LoRA run also needs its frozen base again
    // when it resumes (its checkpoints hold only the adapters).
    let pretrained = match (recipe.model.init_from.clone(), &opts.resume) {
        (Some(from), None) => Some(load_pretrained(&mut recipe, &from, &device)?),
        (Some(from), Some(_)) if recipe.lora.is_some() => {
            Some(load_pretrained(&mut recipe, &from, &device)?)
        }
        _ => None,
    };
    let data = anvil_data::pipeline::run(&recipe.data, &opts.command_line)?;
    Ok(Staged {
        recipe,
        resumed,
        pretrained,
        data,
    })
}

/// A run folder being resumed: locked, cleaned of a killed writer's leftovers, pruned to
/// `keep_last`, with its newest checkpoint's state.
pub(crate) struct Resumed {
    pub dir: PathBuf,
    pub latest: PathBuf,
    pub state: TrainerState,
    pub lock: RunLock,
}

pub(crate) fn open_resume(
    dir: &Path,
    recipe: &Recipe,
    world: &World,
) -> Result<Resumed, TrainError> {
    if !dir.is_dir() {
        return Err(TrainError::Recipe(format!(
            "{}: no such run folder",
            dir.display()
        )));
    }
    let lock = RunLock::acquire(dir)?;
    let ckpt_dir = dir.join("checkpoints");
    clean_checkpoints(&ckpt_dir)?;
    let (_, latest) = checkpoint::list(&ckpt_dir).pop().ok_or_else(|| {
        TrainError::Recipe(format!(
            "{}: no checkpoint to resume from",
            ckpt_dir.display()
        ))
    })?;
    // A kill between saving a checkpoint and pruning the oldest leaves one too many, also when
    // that was the run's last save.
    checkpoint::prune(&ckpt_dir, recipe.checkpoint.keep_last)?;
    let state = checkpoint::read_state(&latest)?;
    // Each step's rows are dealt out by rank: another count would train on other batches.
    let ranks = state.world_size.unwrap_or(1);
    if ranks != world.size() {
        let how = |n: usize| match n {
            1 => "one process".to_string(),
            n => format!("{n} ranks (mpirun -np {n})"),
        };
        return Err(TrainError::Recipe(format!(
            "{}: this run was trained on {}; resume it on the same, not on {} (each step's \
             rows are split by rank)",
            latest.display(),
            how(ranks),
            how(world.size())
        )));
    }
    // One already at train.max_steps has nothing to do, and changes nothing.
    if state.step >= recipe.train.max_steps {
        return Err(TrainError::AlreadyFinished { step: state.step });
    }
    Ok(Resumed {
        dir: dir.to_path_buf(),
        latest,
        state,
        lock,
    })
}

/// `model.init_from`: the pretrained model (an Anvil checkpoint, a run folder or an HF folder),
/// whose shape the recipe takes (keys it sets must agree) and whose tokenizer the data pipeline
/// then uses instead of training one.
/// Returns it with its tokenizer and generation defaults (`checkpoint`: the folder its weights
/// came from).
pub(crate) fn load_pretrained(
    recipe: &mut Recipe,
    from: &Path,
    device: &Device,
) -> Result<anvil_infer::Loaded, TrainError> {
    let loaded = anvil_infer::load(from, None, device)
        .map_err(|e| TrainError::Recipe(format!("`model.init_from`: {e}")))?;
    recipe
        .model
        .adopt(&loaded.model.config, &loaded.checkpoint)?;
    recipe.data.tokenizer_file = Some(loaded.tokenizer_path.clone());
    // A quantized checkpoint's projections arrive in their blocks; training starts from their
    // f32 values (QLoRA quantizes them again, to `lora.base_quant`).
    Ok(anvil_infer::Loaded {
        model: lora::dequantize_base(loaded.model),
        ..loaded
    })
}

/// A fresh model for training on `device`: its weights are drawn on the CPU, in parameter order,
/// from `seed`, whatever the device (a GPU backend's generator is not the CPU's), so a seed gives
/// the same initial model on every device.
fn init_model(config: &LlamaConfig, device: &Device, seed: u64) -> Llama {
    let cpu = anvil_models::device::cpu();
    cpu.seed(seed);
    let model = anvil_models::materialized(config.init(&cpu));
    anvil_models::trainable(model.fork(&device.clone().autodiff()))
}

/// A pretrained model (loaded for inference) moved onto the autodiff `device` and made trainable;
/// with LoRA, adapters are attached last and the base frozen, and with QLoRA the base's
/// projections are then quantized, after its fingerprint (the f32 base's) is taken. Returns it
/// with the base's (absolute folder, fingerprint) under LoRA, and its parameter count.
pub(crate) fn make_trainable(
    loaded: anvil_infer::Loaded,
    lora: Option<&lora::LoraConfig>,
    device: &Device,
) -> (Llama, Option<(String, String)>, usize) {
    let mut m = anvil_models::trainable(loaded.model.fork(device));
    let mut base_ref = None;
    if let Some(cfg) = lora {
        let from = loaded.checkpoint;
        let path = std::path::absolute(&from).unwrap_or(from);
        base_ref = Some((path.display().to_string(), peft::base_fingerprint(&m)));
        m = lora::apply_lora(m, cfg);
    }
    let parameters = m.num_params();
    // Validated with the recipe.
    if let Some(Ok(Some(ty))) = lora.map(|c| c.base_quant_type()) {
        m = lora::quantize_base(m, ty).0;
    }
    (m, base_ref, parameters)
}

/// The run's folder, log and lock: a new folder, or the resumed one, whose newest checkpoint
/// then gives the trainer state, the optimizer and `model`'s weights (with `base_ref`, a LoRA
/// run's adapter onto its base, which must not have changed since). Rank 0's alone: other ranks
/// get no folder (rank 0 sends its path after setup), log or lock.
#[allow(clippy::type_complexity)]
pub(crate) fn open_run(
    recipe: &Recipe,
    opts: &RunOptions,
    resumed: Option<Resumed>,
    model: Llama,
    base_ref: Option<&(String, String)>,
    (opt, state): (&mut AdamW, &mut TrainerState),
    device: &Device,
) -> Result<(Llama, PathBuf, Option<RunLog>, Option<RunLock>), TrainError> {
    if !opts.world.is_root() {
        return Ok((model, PathBuf::new(), None, None));
    }
    match resumed {
        Some(Resumed {
            dir,
            latest,
            state: s,
            lock,
        }) => {
            *state = s;
            // A resumed f16 run keeps its scale; one switched to or from f16 drops or starts it.
            state.loss_scaler = (recipe.train.precision.scales_loss())
                .then(|| state.loss_scaler.unwrap_or_default());
            let model = match base_ref {
                Some((_, fingerprint)) => {
                    let bad = |e: peft::PeftError| TrainError::Recipe(e.to_string());
                    peft::check_fingerprint(fingerprint, &latest).map_err(bad)?;
                    peft::load_adapter(model, &latest).map_err(bad)?.0
                }
                None => anvil_models::store::load_weights(model, &latest)
                    .map_err(checkpoint::CheckpointError::from)?,
            };
            checkpoint::load_optimizer(opt, &latest, state.optimizer_step, device)?;
            let log = RunLog::resume(&dir, recipe, opts)?;
            Ok((model, dir, Some(log), Some(lock)))
        }
        None => {
            state.loss_scaler = recipe.train.precision.scales_loss().then(Default::default);
            let dir = new_run_dir(recipe, opts);
            std::fs::create_dir_all(&dir)
                .map_err(|e| anvil_tracking::TrackingError::io(&dir, e))?;
            let lock = RunLock::acquire(&dir)?;
            let log = RunLog::create(&dir, recipe, opts)?;
            // A folder that held a run before (its run.json deleted) may hold a killed writer's.
            clean_checkpoints(&dir.join("checkpoints"))?;
            Ok((model, dir, Some(log), Some(lock)))
        }
    }
}

/// Removes what a killed checkpoint write left (restoring `best/` if it was mid-swap), saying so
/// on stderr in one line.
pub(crate) fn clean_checkpoints(dir: &Path) -> Result<(), TrainError> {
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
    manifest: &anvil_data::tokenize::TokenizeManifest,
) -> Result<(), TrainError> {
    let (vocab, seq_len) = (manifest.vocab_size, manifest.seq_len);
    if let Some(tree) = &mut model.tree {
        anvil_data::lang::parse_one(&tree.lang)
            .map_err(|e| TrainError::Recipe(format!("`model.tree.lang`: {e}")))?;
        // Generation computes positions as the shards did: the same path truncation.
        match (tree.ast_max_path, manifest.ast_max_path) {
            (None, data) => tree.ast_max_path = data,
            (Some(a), Some(b)) if a != b => {
                return Err(TrainError::Recipe(format!(
                    "`model.tree.ast_max_path` = {a}, but the data's positions keep {b} levels \
                     (data.tokenize.ast_max_path)"
                )));
            }
            _ => {}
        }
    }
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

pub(crate) fn new_run_dir(recipe: &Recipe, opts: &RunOptions) -> PathBuf {
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
