//! One error type for the data crate; every variant names the file (and line or key) at fault so
//! the CLI can print a single actionable line.

use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The OS error is part of the message and deliberately not a `source`: the CLI prints the
    // whole chain, and would say it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Jsonl {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Parquet { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            err,
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn parquet(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        DataError::Parquet {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
}
