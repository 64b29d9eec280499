//! The RL loop, readable in one sitting: setup (policy, reference, problems, sandbox, reward),
//! then per step a batch of rollouts, their rewards and the update (GRPO's step in `grpo.rs`,
//! DPO's in `dpo.rs`), then the cadence — log, held-out pass@1, checkpoint — until
//! `train.max_steps` or a signal.
//!
//! A step is one batch of rollouts and its `rl.num_iterations` optimizer updates. Rollout seeds
//! are a function of `train.seed`, the step and the prompt's slot, and the problem order is the
//! trainer's seeded row stream, so `--resume` continues bit-identically from any checkpoint.

use super::config::{Algorithm, Pairs, RewardConfig, RlConfig};
use super::dpo;
use super::rollout::{self, Rollout, StepScores};
use crate::checkpoint::{self, TrainerState, Weights};
use crate::dist::{DataParallel, World};
use crate::loader::RowStream;
use crate::optim::AdamW;
use crate::recipe::Recipe;
use crate::runlog::RunLog;
use crate::trainer::{
    RunOptions, RunSummary, load_pretrained, make_trainable, open_resume, open_run, save_on_root,
};
use crate::{TrainError, signals};
use anvil_data::problems::Problem;
use anvil_eval::evaluate::Verdict;
use anvil_eval::reward::{CompositeReward, License, Reward, TestPassRate};
use anvil_eval::scorer::Scorer;
use anvil_infer::Generator;
use anvil_models::generation::GenerationConfig;
use anvil_models::memory::{self, Workload};
use anvil_models::{Llama, TokenBatch, lora};
use anvil_tracking::RunLock;
use burn::module::Module;
use burn::tensor::Tensor;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokenizers::Tokenizer;

/// This rank's rollouts with each one's verdict and reward, and the whole step's scores.
pub(super) type Scored = (Vec<Rollout>, Vec<Verdict>, Vec<Reward>, StepScores);

/// The plot an RL run leaves in its folder.
pub const RL_PLOT: &str = "rl.png";
const PLOTTED: [&str; 6] = [
    "rl/reward_mean",
    "rl/pass_rate",
    "eval/pass_at_1",
    "rl/kl",
    "rl/entropy",
    "rl/completion_tokens",
];

/// Runs (or resumes) an RL recipe to the end, or until interrupted.
pub fn run(recipe: Recipe, opts: RunOptions) -> Result<RunSummary, TrainError> {
    let (mut t, mut model) = RlTrainer::setup(recipe, opts)?;
    // Rollouts, rewards' forward passes and updates alike run in the recipe's precision.
    let _cast = anvil_models::precision::autocast(t.recipe.train.precision);
    signals::install();
    if t.state.step == 0 && !t.world.any(signals::interrupted()) {
        // The starting point's held-out pass@1, in the same run as the rest of the curve.
        t.heldout_first = t.evaluate(&model)?;
    }
    loop {
        let t0 = Instant::now();
        let mut metrics;
        (model, metrics) = match t.cfg.algorithm {
            Algorithm::Grpo => t.grpo_step(model)?,
            Algorithm::Dpo => t.dpo_step(model)?,
        };
        metrics.push(("rl/step_s".into(), t0.elapsed().as_secs_f64()));
        let n = t.state.step;
        if let Some(log) = &t.log
            && (n % t.recipe.train.log_every == 0 || n == t.recipe.train.max_steps)
        {
            log.metrics(n, &metrics)?;
        }
        let finished = n == t.recipe.train.max_steps;
        // A signal to any rank stops them all, at the same step.
        let stop_now = t.world.any(signals::interrupted()) && !finished;
        let every = |k: usize| k > 0 && n % k == 0;
        let mut new_best = false;
        if (finished || every(t.recipe.eval.every)) && !stop_now {
            new_best = t.evaluate(&model)?.is_some_and(|p| {
                let best = t.state.best_pass_at_1.is_none_or(|b| p > b);
                if best {
                    t.state.best_pass_at_1 = Some(p);
                }
                best
            });
        }
        let c = &t.recipe.checkpoint;
        if finished || stop_now || (new_best && c.keep_best) || every(c.every) {
            t.save(&model, new_best)?;
        }
        if stop_now || finished {
            return t.finish(stop_now);
        }
    }
}

/// What the reference log-probabilities come from (GRPO with `beta > 0`, and DPO).
pub(super) enum Reference {
    None,
    /// LoRA: the policy itself with its adapters switched off — no second copy of the weights.
    BaseOfAdapters,
    /// Full fine-tuning: the starting weights, frozen (sharing memory with the policy until its
    /// first update copies them).
    Frozen(Box<Llama>),
}

pub(super) struct RlTrainer {
    pub(super) recipe: Recipe,
    pub(super) cfg: RlConfig,
    pub(super) opt: AdamW,
    pub(super) state: TrainerState,
    pub(super) problems: Vec<Problem>,
    pub(super) heldout: Vec<Problem>,
    /// DPO with `pairs = "file"`.
    pub(super) pairs: Vec<dpo::Pair>,
    pub(super) stream: RowStream,
    pub(super) tokenizer: Tokenizer,
    pub(super) eos: Vec<u32>,
    pub(super) generation: GenerationConfig,
    pub(super) reference: Reference,
    pub(super) scorer: Scorer,
    pub(super) reward: CompositeReward,
    pub(super) run_dir: PathBuf,
    pub(super) parameters: usize,
    pub(super) trainable_parameters: usize,
    pub(super) base_ref: Option<(String, String)>,
    pub(super) bar: indicatif::ProgressBar,
    pub(super) started: Instant,
    pub(super) last_reward: Option<f64>,
    pub(super) heldout_first: Option<f64>,
    pub(super) heldout_last: Option<f64>,
    pub(super) last_ckpt: Option<PathBuf>,
    pub(super) tokens: u64,
    pub(super) world: World,
    /// Several ranks: the gradient exchange (rollouts and rewards are split by prompt).
    pub(super) dp: Option<DataParallel>,
    /// Rank 0's alone.
    pub(super) log: Option<RunLog>,
    pub(super) _lock: Option<RunLock>,
}

/// Problems from `spec`; every one must have a test to run (`key` names the recipe key).
fn load_problems(spec: &str, key: &str) -> Result<Vec<Problem>, TrainError> {
    let problems = anvil_data::problems::load(spec)
        .map_err(|e| TrainError::Recipe(format!("`{key}`: {e}")))?;
    if problems.is_empty() {
        return Err(TrainError::Recipe(format!(
            "`{key}`: {spec} holds no problems"
        )));
    }
    if let Some((i, p)) = problems
        .iter()
        .enumerate()
        .find(|(_, p)| p.test.trim().is_empty() || p.entry_point.trim().is_empty())
    {
        return Err(TrainError::Recipe(format!(
            "{spec}:{}: task `{}` has no {} to run, so no reward",
            i + 1,
            p.task_id,
            if p.test.trim().is_empty() {
                "test"
            } else {
                "entry_point"
            }
        )));
    }
    Ok(problems)
}

/// The composite reward with the recipe's weights and license settings; the tests' verdicts are
/// put on the completions by [`rollout::score`].
fn composite(r: &RewardConfig) -> Result<CompositeReward, TrainError> {
    let bad = |key: &str, e: &dyn std::fmt::Display| TrainError::Recipe(format!("`{key}`: {e}"));
    let mut policy = anvil_eval::analyze::license::LicensePolicy::default();
    if !r.license_allow.is_empty() {
        policy.allow = r.license_allow.clone();
    }
    let index = match &r.corpus_index {
        Some(p) => Some(Arc::new(
            anvil_eval::analyze::license::CorpusIndex::load(p, policy.jaccard_threshold)
                .map_err(|e| bad("reward.corpus_index", &e))?,
        )),
        None => None,
    };
    let license = License::new(policy, index).map_err(|e| bad("reward.license_allow", &e))?;
    let w = &r.weights;
    CompositeReward::standard(
        TestPassRate::from_verdicts(),
        license,
        [w[0], w[1], w[2], w[3]],
    )
    .map_err(|e| bad("reward.weights", &e))
}

pub(super) fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 log-probabilities")
}

pub(super) fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

impl RlTrainer {
    /// Every rank sets up alike (its own problems, sandbox and reward); rank 0 alone opens the
    /// run folder, then sends the others its weights, optimizer and trainer state.
    fn setup(recipe: Recipe, opts: RunOptions) -> Result<(RlTrainer, Llama), TrainError> {
        let world = opts.world.clone();
        world.set_timeout(recipe.distributed.timeout);
        let (mut t, mut model) = world.agree(Self::build(recipe, opts))?;
        if world.is_distributed() {
            t.state = world.broadcast_json(t.state.clone());
            t.run_dir = world.broadcast_json(t.run_dir.clone());
            let n = t.stream_len();
            t.stream = RowStream::new(n, t.recipe.train.seed, t.state.position);
            if !t.cfg.shuffle {
                t.stream = t.stream.in_order();
            }
            let r = &t.recipe;
            let mut dp = DataParallel::new(world.clone(), &model, &r.distributed, &r.optim);
            model = dp.sync_start(model, &mut t.opt, &r.optim);
            t.dp = Some(dp);
        }
        Ok((t, model))
    }

    /// What the row stream deals out: pairs from a file, or problems.
    fn stream_len(&self) -> usize {
        if self.pairs.is_empty() {
            self.problems.len()
        } else {
            self.pairs.len()
        }
    }

    fn build(mut recipe: Recipe, opts: RunOptions) -> Result<(RlTrainer, Llama), TrainError> {
        recipe.validate()?;
        let world = opts.world.clone();
        let cfg = recipe.rl.clone().expect("an RL recipe");
        if !cfg.prompts_per_step.is_multiple_of(world.size()) {
            return Err(TrainError::Recipe(format!(
                "`rl.prompts_per_step` = {} is not a multiple of the {} ranks (each rank rolls \
                 out the same number of prompts)",
                cfg.prompts_per_step,
                world.size()
            )));
        }
        let reward_cfg = recipe.reward.clone().unwrap_or_default();
        // Everything a user can get wrong is refused before a run folder exists or a rollout
        // runs: the problems, the pairs, the reward's settings, the sandbox.
        let uses_problems = cfg.algorithm == Algorithm::Grpo || cfg.pairs == Pairs::Execution;
        let problems = if uses_problems {
            load_problems(&cfg.problems, "rl.problems")?
        } else {
            Vec::new()
        };
        let mut heldout = match &cfg.heldout {
            Some(spec) if !spec.trim().is_empty() => load_problems(spec, "rl.heldout")?,
            _ => Vec::new(),
        };
        if cfg.heldout_limit > 0 {
            heldout.truncate(cfg.heldout_limit);
        }
        let pairs = match (&cfg.algorithm, &cfg.pairs, &cfg.pairs_file) {
            (Algorithm::Dpo, Pairs::File, Some(path)) => dpo::read_pairs(path)?,
            _ => Vec::new(),
        };
        let reward = composite(&reward_cfg)?;
        let resumed = match (&opts.resume, world.is_root()) {
            (Some(dir), true) => Some(open_resume(dir, &recipe, &world)?),
            _ => None,
        };
        let device = recipe.train.device()?;
        let from = recipe.model.init_from.clone().expect("validated");
        let loaded = load_pretrained(&mut recipe, &from, &device)?;
        if loaded.model.config.tree.is_some() {
            // Rollouts would place their tokens, but the policy's update batches carry no
            // positions: it would train on inputs it never sees when generating.
            return Err(TrainError::Recipe(format!(
                "`model.init_from`: {} is a tree model (`arch = \"tree\"`), which RL does not \
                 train yet: its update batches carry no tree positions",
                from.display()
            )));
        }
        let rows = cfg.micro_batch.max(2);
        let seq_len = recipe.model.max_seq_len;
        let workload = match &recipe.lora {
            Some(l) => Workload::TrainFrozen {
                batch: rows,
                seq_len,
                adapters: l.parameter_count(&recipe.model),
            },
            None => Workload::Train {
                batch: rows,
                seq_len,
            },
        };
        memory::check(&recipe.model, workload)
            .map_err(|e| TrainError::Recipe(format!("`rl.micro_batch`: the model {e}")))?;
        // A step decodes all its completions as one batch, each with its KV cache.
        let decode = Workload::Decode {
            rows: cfg.completions_per_step(),
            context: seq_len,
        };
        memory::check(&recipe.model, decode).map_err(|e| {
            let per_prompt = match cfg.algorithm {
                Algorithm::Grpo => "rl.group_size",
                Algorithm::Dpo => "rl.dpo_samples",
            };
            TrainError::Recipe(format!(
                "`rl.prompts_per_step` × `{per_prompt}`: the model {e}"
            ))
        })?;

        // The sandbox last: its warnings about missing layers come after every refusal.
        let isolation = reward_cfg
            .isolation
            .parse()
            .map_err(|e: String| TrainError::Recipe(format!("`reward.isolation`: {e}")))?;
        let limits = anvil_eval::args::sample_limits(reward_cfg.timeout, reward_cfg.memory_mb);
        let sandbox = anvil_eval::sandbox::Sandbox::new(isolation, limits)
            .map_err(|e| TrainError::Recipe(format!("`reward.isolation`: {e}")))?;
        let missing = sandbox.describe();
        if !missing.is_empty() {
            eprintln!(
                "warning: {}",
                missing.lines().collect::<Vec<_>>().join("; ")
            );
        }
        let scorer = Scorer::new(sandbox, reward_cfg.workers())
            .map_err(|e| TrainError::Recipe(format!("sandbox: {e}")))?;

        device.seed(recipe.train.seed);
        let train_device = device.clone().autodiff();
        let needs_reference = cfg.beta > 0.0 || cfg.algorithm == Algorithm::Dpo;
        let frozen_copy = (recipe.lora.is_none() && needs_reference).then(|| loaded.model.clone());
        let tokenizer_path = loaded.tokenizer_path.clone();
        let (tokenizer, eos, generation) = (
            loaded.tokenizer.clone(),
            loaded.eos.clone(),
            loaded.generation.clone(),
        );
        let (model, base_ref, parameters) =
            make_trainable(loaded, recipe.lora.as_ref(), &train_device);
        let reference = match frozen_copy {
            Some(m) => Reference::Frozen(Box::new(m)),
            None if recipe.lora.is_some() && needs_reference => Reference::BaseOfAdapters,
            None => Reference::None,
        };
        let mut opt = AdamW::new(recipe.optim.clone());
        let mut state = TrainerState::default();
        let (model, run_dir, mut log, lock) = open_run(
            &recipe,
            &opts,
            resumed,
            model,
            base_ref.as_ref(),
            (&mut opt, &mut state),
            &device,
        )?;
        if let Some(log) = &mut log {
            log.plot_metrics(RL_PLOT, &PLOTTED);
            log.artifact_copy(&tokenizer_path, "tokenizer.json")?;
        }
        let n_items = if pairs.is_empty() {
            problems.len()
        } else {
            pairs.len()
        };
        let mut stream = RowStream::new(n_items, recipe.train.seed, state.position);
        if !cfg.shuffle {
            stream = stream.in_order();
        }
        let bar = match world.is_root() {
            true => anvil_data::progress::bar(recipe.train.max_steps as u64, "rl", false),
            false => indicatif::ProgressBar::hidden(),
        };
        bar.set_position(state.step as u64);
        let trainable_parameters = match recipe.lora {
            Some(_) => lora::adapter_parameter_count(&model),
            None => model.num_params(),
        };
        let trainer = RlTrainer {
            cfg,
            opt,
            state,
            problems,
            heldout,
            pairs,
            stream,
            tokenizer,
            eos,
            generation,
            reference,
            scorer,
            reward,
            run_dir,
            parameters,
            trainable_parameters,
            base_ref: recipe.lora.as_ref().and(base_ref),
            bar,
            started: Instant::now(),
            last_reward: None,
            heldout_first: None,
            heldout_last: None,
            last_ckpt: None,
            tokens: 0,
            world,
            dp: None,
            log,
            _lock: lock,
            recipe,
        };
        Ok((trainer, model))
    }

    /// A generator over the policy's current weights (shared, not copied); dropped before the
    /// update, so the optimizer keeps updating them in place.
    pub(super) fn generator(&self, model: &Llama) -> Generator {
        Generator::new(
            model.valid(),
            self.tokenizer.clone(),
            self.eos.clone(),
            self.generation.clone(),
        )
    }

    pub(super) fn sampling(
        &self,
        n: usize,
        temperature: Option<f32>,
        g: &Generator,
    ) -> anvil_infer::GenerateParams {
        rollout::params(&self.cfg, n, temperature, g.token_healing(false))
    }

    /// Per token of `batch` (`[rows · seq]`), the reference's log-probabilities at `temperature`.
    pub(super) fn reference_logprobs(
        &self,
        model: &Llama,
        batch: &TokenBatch,
        temperature: f32,
    ) -> Vec<f32> {
        let out = match &self.reference {
            Reference::Frozen(m) => m.token_logprobs(batch, temperature, false),
            Reference::BaseOfAdapters => {
                let valid = model.valid();
                lora::without_adapters(|| valid.token_logprobs(batch, temperature, false))
            }
            Reference::None => unreachable!("a reference is only asked for when there is one"),
        };
        host(out.logprobs)
    }

    /// Samples `n` completions of the next `prompts_per_step` problems (this rank's block of
    /// them) and scores them.
    pub(super) fn rollouts(
        &mut self,
        model: &Llama,
        n: usize,
        metrics: &mut Vec<(String, f64)>,
    ) -> Result<Scored, TrainError> {
        let t0 = Instant::now();
        let all = self.stream.next_rows(self.cfg.prompts_per_step);
        let mine = self.world.block(all.len());
        let seeds: Vec<u64> = mine
            .clone()
            .map(|i| crate::trainer::derive_seed(self.recipe.train.seed, self.state.step, i))
            .collect();
        let idx = &all[mine];
        let g = self.generator(model);
        let params = self.sampling(n, Some(self.cfg.temperature), &g);
        let (rollouts, timing) = rollout::sample(&g, &self.problems, idx, &seeds, &params)
            .map_err(|e| TrainError::Recipe(format!("rollout: {e}")))?;
        drop(g);
        let rollout_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (verdicts, rewards) =
            rollout::score(&self.scorer, &self.reward, &self.problems, &rollouts)
                .map_err(|e| TrainError::Recipe(format!("reward: {e}")))?;
        let reward_s = t1.elapsed().as_secs_f64();
        let terms: Vec<&str> = self.reward.weights().into_iter().map(|(t, _)| t).collect();
        let scores = StepScores::gather(&self.world, &rollouts, &verdicts, &rewards, &terms);
        let reward_mean = mean(scores.totals.iter().copied());
        let var = mean(scores.totals.iter().map(|t| (t - reward_mean).powi(2)));
        self.last_reward = Some(reward_mean);
        let share = |xs: &[bool]| mean(xs.iter().map(|&x| f64::from(u8::from(x))));
        metrics.extend([
            ("rl/reward_mean".into(), reward_mean),
            ("rl/reward_std".into(), var.sqrt()),
            ("rl/pass_rate".into(), share(&scores.passed)),
            (
                "rl/completion_tokens".into(),
                mean(scores.tokens.iter().map(|&n| n as f64)),
            ),
            ("rl/truncated_share".into(), share(&scores.truncated)),
            ("rl/rollout_s".into(), rollout_s),
            ("rl/reward_s".into(), reward_s),
            (
                "rl/decode_tokens_per_s".into(),
                timing.generated_tokens as f64 / timing.decode_seconds.max(1e-9),
            ),
        ]);
        for (term, values) in terms.iter().zip(&scores.terms) {
            metrics.push((format!("rl/reward/{term}"), mean(values.iter().copied())));
        }
        // The steps whose metrics are logged (this step is `state.step + 1` once done).
        let n = self.state.step + 1;
        if n.is_multiple_of(self.recipe.train.log_every) || n == self.recipe.train.max_steps {
            self.write_samples(
                &format!("{}.jsonl", checkpoint::step_name(n)),
                &self.problems,
                &rollouts,
                &verdicts,
                &rewards,
                self.cfg.log_samples,
            )?;
        }
        Ok((rollouts, verdicts, rewards, scores))
    }

    /// `<run>/samples/<name>`: the first `limit` rollouts with their rewards, for reading what
    /// the model does (rank 0 writes its own).
    fn write_samples(
        &self,
        name: &str,
        problems: &[Problem],
        rollouts: &[Rollout],
        verdicts: &[Verdict],
        rewards: &[Reward],
        limit: usize,
    ) -> Result<(), TrainError> {
        if !self.world.is_root() {
            return Ok(());
        }
        let mut text = String::new();
        for ((r, v), w) in rollouts.iter().zip(verdicts).zip(rewards).take(limit) {
            let row = json!({
                "task_id": problems[r.problem].task_id,
                "completion": r.completion.text,
                "finish_reason": r.completion.finish_reason,
                "completion_tokens": r.tokens.len(),
                "reward": w.total,
                "components": w.components,
                "passed": v.passed,
                "result": v.result,
                "cases_passed": v.cases_passed,
                "cases_total": v.cases_total,
            });
            text.push_str(&row.to_string());
            text.push('\n');
        }
        let path = self.run_dir.join("samples").join(name);
        std::fs::create_dir_all(path.parent().expect("a folder"))
            .map_err(|e| anvil_tracking::TrackingError::io(&path, e))?;
        anvil_data::atomic::write(&path, text.as_bytes())?;
        Ok(())
    }

    /// Records a finished step in the state a checkpoint saves.
    pub(super) fn end_step(&mut self) {
        self.state.step += 1;
        self.state.optimizer_step = self.opt.step;
        self.state.position = self.stream.position;
        self.state.tokens_seen = self.tokens;
        self.bar.set_position(self.state.step as u64);
    }

    /// Greedy pass@1 on the held-out problems (logged as `eval/pass_at_1`, with the mean test
    /// pass rate and reward), their completions written to `samples/heldout-<step>.jsonl`.
    fn evaluate(&mut self, model: &Llama) -> Result<Option<f64>, TrainError> {
        if self.heldout.is_empty() {
            return Ok(None);
        }
        let g = self.generator(model);
        let params = self.sampling(1, None, &g);
        let mut rollouts = Vec::with_capacity(self.heldout.len());
        // Each rank its block of the problems; the counts are added up.
        let all: Vec<usize> = self.world.block(self.heldout.len()).collect();
        // Bounded batches: greedy rows all run to their end, and padding grows with the batch.
        for chunk in all.chunks(32) {
            let seeds = vec![0; chunk.len()];
            let (r, _) = rollout::sample(&g, &self.heldout, chunk, &seeds, &params)
                .map_err(|e| TrainError::Recipe(format!("held-out rollout: {e}")))?;
            rollouts.extend(r);
        }
        drop(g);
        let (verdicts, rewards) =
            rollout::score(&self.scorer, &self.reward, &self.heldout, &rollouts)
                .map_err(|e| TrainError::Recipe(format!("held-out reward: {e}")))?;
        let sums = self.world.sum(&[
            verdicts.iter().filter(|v| v.passed).count() as f64,
            verdicts.iter().map(|v| v.pass_rate).sum(),
            rewards.iter().map(|r| r.total).sum(),
        ]);
        let n = self.heldout.len() as f64;
        let pass = sums[0] / n;
        if let Some(log) = &self.log {
            log.metrics(
                self.state.step,
                &[
                    ("eval/pass_at_1".into(), pass),
                    ("eval/test_pass_rate".into(), sums[1] / n),
                    ("eval/reward_mean".into(), sums[2] / n),
                ],
            )?;
        }
        self.write_samples(
            &format!("heldout-{}.jsonl", checkpoint::step_name(self.state.step)),
            &self.heldout,
            &rollouts,
            &verdicts,
            &rewards,
            usize::MAX,
        )?;
        self.heldout_last = Some(pass);
        Ok(Some(pass))
    }

    fn save(&mut self, model: &Llama, new_best: bool) -> Result<(), TrainError> {
        let dir = self.run_dir.join("checkpoints");
        let weights = match (&self.recipe.lora, &self.base_ref) {
            (Some(config), Some((base, fingerprint))) => Weights::Adapter {
                config,
                base,
                fingerprint,
            },
            _ => Weights::Full,
        };
        let generation = &self.generation;
        let saved = save_on_root(
            &self.world,
            self.dp.as_mut(),
            &mut self.opt,
            &self.state,
            |opt, state| checkpoint::save(&dir, model, weights, generation, opt, state),
        )?;
        if let Some(path) = saved {
            if new_best && self.recipe.checkpoint.keep_best {
                checkpoint::mark_best(&dir, &path)?;
            }
            checkpoint::prune(&dir, self.recipe.checkpoint.keep_last)?;
            self.last_ckpt = Some(path);
        }
        Ok(())
    }

    fn finish(self, interrupted: bool) -> Result<RunSummary, TrainError> {
        self.bar.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        let summary = RunSummary {
            run_dir: self.run_dir.clone(),
            steps: self.state.step,
            interrupted,
            final_train_loss: None,
            final_val_loss: None,
            best_val_loss: None,
            val_perplexity: None,
            val_bits_per_byte: None,
            tokens_seen: self.state.tokens_seen,
            tokens_per_second: self.tokens as f64 / seconds.max(1e-9),
            seconds,
            parameters: self.parameters,
            trainable_parameters: self.trainable_parameters,
            last_checkpoint: self.last_ckpt.clone(),
            reward_mean: self.last_reward,
            heldout_pass_at_1_start: self.heldout_first,
            heldout_pass_at_1: self.heldout_last,
        };
        if let Some(log) = &self.log {
            log.finish(&summary)?;
        }
        Ok(summary)
    }
}
