//! Trainers: a recipe, a loop you can read in one sitting, and the pieces it needs (AdamW with
//! global-norm clipping, the schedule, the row stream, checkpoints with full-state resume).

pub mod checkpoint;
pub mod dist;
pub mod loader;
pub mod optim;
pub mod recipe;
pub mod rl;
pub mod runlog;
pub mod signals;
pub mod trainer;

pub use recipe::{Recipe, RecipeError};
pub use trainer::{RunOptions, RunSummary, run};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("recipe {0}")]
    Invalid(#[from] RecipeError),
    #[error("{0}")]
    Recipe(String),
    #[error(transparent)]
    Data(#[from] anvil_data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Tracking(#[from] anvil_tracking::TrackingError),
    /// `--resume` of a run whose newest checkpoint is at (or past) `train.max_steps`: nothing to
    /// do, and nothing was changed. Not a failure for the CLI.
    #[error("run already finished at step {step}; raise train.max_steps to continue")]
    AlreadyFinished { step: usize },
}
