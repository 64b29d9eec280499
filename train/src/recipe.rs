//! The training recipe: one TOML file, one documented struct. Every section and key is optional
//! (the defaults are below); unknown keys, wrong types and impossible values are errors that name
//! the key before any work starts.

use anvil_data::pipeline::DataRecipe;
use anvil_models::LlamaConfig;
use anvil_models::lora::LoraConfig;
pub use anvil_tracking::mlflow::TrackingConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Token shards, or the sources to build them from (`anvil data pipeline`'s section).
    pub data: DataRecipe,
    /// The model: its shape (see `anvil_models::LlamaConfig`; `[model.moe]` makes it a mixture
    /// of experts), or pretrained weights to start from (`init_from`).
    pub model: ModelSection,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    pub tracking: TrackingConfig,
    pub output: OutputConfig,
    /// Train LoRA adapters on the frozen `model.init_from` instead of every weight (PEFT's
    /// `LoraConfig`: `r`, `alpha`, `dropout`, `target_modules`, `use_rslora`, `bias`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// Reinforcement learning from execution feedback (GRPO or DPO) on `model.init_from`
    /// instead of next-token training on `[data]` (docs/rl.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rl: Option<crate::rl::RlConfig>,
    /// The composite reward RL optimizes, and the sandbox its tests run in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward: Option<crate::rl::RewardConfig>,
    /// Data parallelism when the run is started by `mpirun`/`srun` (docs/distributed.md): ZeRO
    /// stage, gradient bucket size, collective timeout.
    pub distributed: crate::dist::DistConfig,
}

/// The recipe's `[model]` section: the architecture's config, plus where to start from.
///
/// With `init_from` (an Anvil checkpoint, a run folder or an HF folder) the shape is the loaded
/// model's; keys the recipe sets must agree with it, so which keys were written is kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ModelSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    #[serde(flatten)]
    pub config: LlamaConfig,
    /// The keys the recipe (or an override) wrote, besides `init_from`.
    #[serde(skip)]
    pub explicit: BTreeSet<String>,
}

impl<'de> Deserialize<'de> for ModelSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // serde's `flatten` cannot keep LlamaConfig's unknown-key errors: split by hand.
        let mut table = toml::Table::deserialize(d)?;
        let init_from = match table.remove("init_from") {
            None => None,
            Some(toml::Value::String(s)) => Some(PathBuf::from(s)),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`init_from` must be a path, not {}",
                    other.type_str()
                )));
            }
        };
        // `arch = "tree"` (or "diffusion") is that architecture with its section's defaults
        // unless the section says more; the section alone makes one too.
        match table.remove("arch") {
            None => {}
            Some(toml::Value::String(a)) => {
                let arch: anvil_models::Arch = a
                    .parse()
                    .map_err(|e| D::Error::custom(format!("`arch`: {e}")))?;
                for other in anvil_models::Arch::ALL {
                    if let Some(sec) = other.section()
                        && other != arch
                        && table.contains_key(sec)
                    {
                        return Err(D::Error::custom(format!(
                            "`arch = \"{arch}\"` has no `{sec}` section (use `arch = \"{other}\"`)"
                        )));
                    }
                }
                if let Some(sec) = arch.section() {
                    table
                        .entry(sec)
                        .or_insert_with(|| toml::Value::Table(Default::default()));
                }
            }
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`arch` must be a string, not {}",
                    other.type_str()
                )));
            }
        }
        let explicit = table.keys().cloned().collect();
        let config =
            LlamaConfig::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(ModelSection {
            init_from,
            config,
            explicit,
        })
    }
}

impl std::ops::Deref for ModelSection {
    type Target = LlamaConfig;
    fn deref(&self) -> &LlamaConfig {
        &self.config
    }
}

impl std::ops::DerefMut for ModelSection {
    fn deref_mut(&mut self) -> &mut LlamaConfig {
        &mut self.config
    }
}

impl ModelSection {
    /// Takes the shape of `loaded` (a pretrained model's config), refusing a key the recipe set
    /// to another value; `source` names where `loaded` came from.
    pub fn adopt(
        &mut self,
        loaded: &LlamaConfig,
        source: &std::path::Path,
    ) -> Result<(), RecipeError> {
        let want = serde_json::to_value(&self.config).unwrap_or_default();
        let have = serde_json::to_value(loaded).unwrap_or_default();
        for key in &self.explicit {
            let (w, h) = (want.get(key), have.get(key));
            if w != h {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("nothing".into(), |v| v.to_string());
                return err(
                    &format!("model.{key}"),
                    format!(
                        "the recipe says {} but the model in {} has {}; remove the key to take \
                         the model's",
                        show(w),
                        source.display(),
                        show(h)
                    ),
                );
            }
        }
        self.config = loaded.clone();
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seeds the initialization and the order of the training rows.
    pub seed: u64,
    /// Optimizer steps.
    pub max_steps: usize,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Log training metrics every this many steps.
    pub log_every: usize,
    /// Worker threads for tensor work; 0 uses every core.
    pub threads: usize,
    /// Where the model trains: `cpu`, `wgpu` or `cuda` (GPU backends need their cargo feature;
    /// docs/gpu.md).
    pub device: anvil_models::device::DeviceKind,
    /// `f32`, or mixed precision: `bf16` / `f16` matrix products with f32 master weights (f16
    /// with dynamic loss scaling); docs/gpu.md.
    pub precision: anvil_models::Precision,
}

impl TrainConfig {
    /// The device `train.device` names, or why this binary cannot drive it.
    pub fn device(&self) -> Result<burn::tensor::Device, RecipeError> {
        anvil_models::device::select(self.device).map_err(|e| RecipeError {
            key: "train.device".into(),
            message: e.to_string(),
        })
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            max_steps: 1000,
            batch_size: 8,
            grad_accum: 1,
            log_every: 10,
            threads: 0,
            device: anvil_models::device::DeviceKind::Cpu,
            precision: anvil_models::Precision::F32,
        }
    }
}

/// AdamW with decoupled weight decay and global-norm gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f64,
    /// Parameters whose name contains one of these get no weight decay (vectors never do).
    pub no_decay: Vec<String>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            no_decay: vec!["norm".into(), "bias".into(), "embed_tokens".into()],
        }
    }
}

/// Linear warmup, then cosine decay to `min_lr_ratio · lr` at `train.max_steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            warmup_steps: 100,
            min_lr_ratio: 0.1,
        }
    }
}

/// Periodic validation on the held-out token shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Validate every this many steps (and at the end); 0 only at the end.
    pub every: usize,
    /// Validation micro-batches per evaluation; 0 uses the whole validation split.
    pub batches: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 100,
            batches: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every this many steps (and at the end); 0 only at the end.
    pub every: usize,
    /// Keep this many most recent checkpoints (the best one is kept besides).
    pub keep_last: usize,
    /// Also keep the checkpoint with the lowest validation loss, as `best/`.
    pub keep_best: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every: 200,
            keep_last: 2,
            keep_best: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Runs are created in this folder.
    pub dir: PathBuf,
    /// The run's folder name; default: the recipe's file name and the start time.
    pub name: Option<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("checkpoints/runs"),
            name: None,
        }
    }
}

/// A value that cannot work, with the dotted key it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct RecipeError {
    pub key: String,
    pub message: String,
}

fn err<T>(key: &str, message: impl Into<String>) -> Result<T, RecipeError> {
    Err(RecipeError {
        key: key.to_string(),
        message: message.into(),
    })
}

impl Recipe {
    /// Checks what serde cannot: ranges and relations between keys. Data that does not exist yet
    /// (shards built by the pipeline) is checked when it is opened.
    pub fn validate(&self) -> Result<(), RecipeError> {
        self.model
            .validate()
            .map_err(|(key, message)| RecipeError {
                key: format!("model.{key}"),
                message,
            })?;
        let t = &self.train;
        // Before any data is built: a device this binary cannot drive is one line up front.
        let device = t.device()?;
        t.precision.check(&device).map_err(|message| RecipeError {
            key: "train.precision".into(),
            message,
        })?;
        for (key, v) in [
            ("train.max_steps", t.max_steps),
            ("train.batch_size", t.batch_size),
            ("train.grad_accum", t.grad_accum),
            ("train.log_every", t.log_every),
        ] {
            if v == 0 {
                return err(key, "must be at least 1");
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return err("optim.lr", format!("must be positive, got {}", o.lr));
        }
        for (key, v) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return err(key, format!("must be in [0, 1), got {v}"));
            }
        }
        if !(o.eps > 0.0) {
            return err("optim.eps", "must be positive");
        }
        if !(o.weight_decay >= 0.0) {
            return err("optim.weight_decay", "must be zero or positive");
        }
        if !(o.grad_clip >= 0.0) {
            return err("optim.grad_clip", "must be zero (off) or positive");
        }
        let s = &self.schedule;
        if !(0.0..=1.0).contains(&s.min_lr_ratio) {
            return err("schedule.min_lr_ratio", "must be in [0, 1]");
        }
        if s.warmup_steps > t.max_steps {
            return err(
                "schedule.warmup_steps",
                format!(
                    "{} is longer than train.max_steps = {}",
                    s.warmup_steps, t.max_steps
                ),
            );
        }
        if let Some(tokens) = &self.data.tokens
            && !tokens.is_dir()
        {
            return err(
                "data.tokens",
                format!("{} is not a folder of token shards", tokens.display()),
            );
        }
        self.distributed.validate()?;
        if let Some(lora) = &self.lora {
            lora.validate().map_err(|(key, message)| RecipeError {
                key: format!("lora.{key}"),
                message,
            })?;
            if self.model.init_from.is_none() {
                return err(
                    "lora",
                    "adapters train on a pretrained base: set model.init_from",
                );
            }
        }
        match (&self.rl, &self.reward) {
            (Some(rl), reward) => {
                rl.validate()?;
                if self.model.init_from.is_none() {
                    return err(
                        "rl",
                        "RL fine-tunes a pretrained model: set model.init_from (an SFT run)",
                    );
                }
                if let Some(r) = reward {
                    r.validate()?;
                }
            }
            (None, Some(_)) => {
                return err("reward", "the reward is for RL runs: add an [rl] section");
            }
            (None, None) => {}
        }
        if let Err(e) = self.tracking.mlflow_target() {
            return err("tracking.uri", e.to_string());
        }
        if let Some(name) = &self.output.name
            && (name.is_empty() || name.contains('/') || name == "." || name == "..")
        {
            return err("output.name", format!("`{name}` is not a folder name"));
        }
        Ok(())
    }
}
