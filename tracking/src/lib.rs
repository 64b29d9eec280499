//! Experiment tracking for every Anvil run: a local run folder by default, MLflow when asked.
//!
//! Training and evaluation log through one [`Run`]:
//! ```no_run
//! use anvil_tracking::{Run, RunInfo, RunKind, Status, TrackingConfig, params};
//! # fn main() -> anvil_tracking::Result<()> {
//! let tracking = TrackingConfig::default(); // the recipe's [tracking] section
//! let run = Run::create(
//!     "checkpoints/runs/quick-1".as_ref(),
//!     RunInfo {
//!         name: "quick-1".into(),
//!         kind: RunKind::Train,
//!         command_line: std::env::args().collect(),
//!         recipe: Some("recipes/quickstart.toml".into()),
//!         mlflow: tracking.mlflow_target()?,
//!     },
//! )?;
//! run.log_params(params::flatten(&serde_json::json!({"train": {"lr": 3e-4}})))?;
//! run.log_metrics(10, &[("train/loss", 2.5), ("train/lr", 3e-4)])?;
//! run.finish(Status::Finished)?;
//! # Ok(()) }
//! ```
//! The run folder is the source of truth ([`folder`] says what is where); MLflow, when a server
//! is configured, is a mirror kept current from a background thread ([`mlflow`]).

pub mod error;
pub mod folder;
pub mod lock;
pub mod mlflow;
pub mod params;
pub mod plot;
pub mod report;
pub mod run;
pub mod system;

pub use error::{Result, TrackingError};
pub use folder::{RunFolder, RunKind, RunMeta, Status};
pub use lock::RunLock;
pub use mlflow::{MlflowTarget, SyncReport, TrackingConfig, sync_run};
pub use run::{Run, RunInfo};
