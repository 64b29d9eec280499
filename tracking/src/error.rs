//! One error type for tracking; every variant names the run folder file (and line or key) at fault
//! so the CLI can print a single actionable line.

use std::path::PathBuf;

pub type Result<T, E = TrackingError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    // The OS error is part of the message and deliberately not a `source`: the CLI prints the
    // whole chain, and would say it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error(
        "{path}: param `{key}` is already {old:?}, cannot change it to {new:?} (MLflow params are write-once; log the new value under another key)"
    )]
    ParamChanged {
        path: PathBuf,
        key: String,
        old: String,
        new: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Mlflow(#[from] crate::mlflow::client::MlflowError),
    #[error("plot: {0}")]
    Plot(String),
}

impl TrackingError {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        TrackingError::Io {
            path: path.into(),
            err,
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrackingError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
