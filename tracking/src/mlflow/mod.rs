//! MLflow as a mirror of the run folder. The folder is the source of truth: a background worker
//! makes the server match it (params, tags, metrics from a byte offset in metrics.jsonl,
//! artifacts, status) and records how far it got in `mlflow.json`, so whatever did not reach
//! the server (it was down, the process was killed) is sent later by the next sync.

pub mod client;
mod sync;

pub(crate) use sync::{Mirror, Worker};
pub use sync::{SyncReport, sync_run};

use crate::error::{Result, TrackingError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The recipe's `[tracking]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// MLflow server, `http://host:5000`. Unset: `MLFLOW_TRACKING_URI` if set. `""`: no MLflow
    /// even when the variable is set. The local run folder is written either way.
    #[serde(default)]
    pub uri: Option<String>,
    /// MLflow experiment name. Unset: `MLFLOW_EXPERIMENT_NAME`, else `anvil`.
    #[serde(default)]
    pub experiment: Option<String>,
}

pub const DEFAULT_EXPERIMENT: &str = "anvil";

impl TrackingConfig {
    /// Where to mirror runs, if anywhere: the recipe's `tracking.uri`, else `MLFLOW_TRACKING_URI`.
    pub fn mlflow_target(&self) -> Result<Option<MlflowTarget>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (uri, source) = match &self.uri {
            Some(u) if u.trim().is_empty() => return Ok(None),
            Some(u) => (u.trim().to_string(), "tracking.uri"),
            None => match env("MLFLOW_TRACKING_URI") {
                Some(u) => (u.trim().to_string(), "MLFLOW_TRACKING_URI"),
                None => return Ok(None),
            },
        };
        let experiment = self
            .experiment
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| env("MLFLOW_EXPERIMENT_NAME"))
            .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string());
        MlflowTarget::new(&uri, &experiment)
            .map(Some)
            .map_err(|e| TrackingError::Config(format!("{source}: {e}")))
    }
}

/// An MLflow server and experiment to mirror a run to.
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowTarget {
    pub uri: String,
    pub experiment: String,
    /// How long `Run::finish` waits for the mirror to catch up before leaving the rest to
    /// `anvil runs sync`.
    pub drain_timeout: Duration,
    /// Limit for one HTTP request.
    pub request_timeout: Duration,
}

impl MlflowTarget {
    pub fn new(uri: &str, experiment: &str) -> std::result::Result<MlflowTarget, String> {
        let uri = uri.trim().trim_end_matches('/');
        let rest = uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() => {}
            _ => {
                return Err(format!(
                    "`{uri}` is not an http:// or https:// MLflow server (the local run folder is \
                     always written; start one with `mlflow server` or unset it)"
                ));
            }
        }
        if experiment.trim().is_empty() {
            return Err("empty MLflow experiment name".into());
        }
        Ok(MlflowTarget {
            uri: uri.to_string(),
            experiment: experiment.trim().to_string(),
            drain_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        })
    }
}

/// `mlflow.json`: how far the mirror got. Everything past these marks is sent by the next sync.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncState {
    pub uri: String,
    pub experiment: String,
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub artifact_uri: Option<String>,
    /// Bytes of metrics.jsonl acknowledged by the server, and the metric lines in them.
    #[serde(default)]
    pub metrics_offset: u64,
    #[serde(default)]
    pub metrics_synced: u64,
    /// Lines of metrics.jsonl that were not metrics (torn by a kill) and were skipped.
    #[serde(default)]
    pub bad_lines: u64,
    /// Params and tags as the server has them (MLflow key → value).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Uploaded artifacts: relative path → `size:mtime` when uploaded.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    /// The status last sent with `runs/update`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Milliseconds since the epoch of the last successful sync.
    #[serde(default)]
    pub last_sync: Option<u64>,
}

/// MLflow accepts metric, param and tag names of alphanumerics, `_ - . : /` and spaces, and no
/// `.`/`..` segments or doubled slashes; Anvil's names (`eval/pass@1`) are mapped onto that:
/// `@` becomes `_at_`, anything else outside the set `_`, up to 250 characters.
pub fn mlflow_key(key: &str) -> String {
    let mut s = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '@' => s.push_str("_at_"),
            c if c.is_alphanumeric() || "_-.: /".contains(c) => s.push(c),
            _ => s.push('_'),
        }
    }
    let segs: Vec<String> = s
        .split('/')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg {
            "." | ".." => "_".to_string(),
            _ => seg.to_string(),
        })
        .collect();
    let mut out = segs.join("/");
    if out.is_empty() {
        out = "_".into();
    }
    truncate_chars(&out, 250).to_string()
}

/// At most `n` characters of `s` (MLflow limits are in characters).
pub fn truncate_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mapped_to_mlflow_names() {
        assert_eq!(mlflow_key("eval/pass@1"), "eval/pass_at_1");
        assert_eq!(mlflow_key("train/loss"), "train/loss");
        assert_eq!(mlflow_key("/a//b/"), "a/b");
        assert_eq!(mlflow_key("a/../b"), "a/_/b");
        assert_eq!(mlflow_key("x=y,z"), "x_y_z");
        assert_eq!(mlflow_key(""), "_");
        assert_eq!(mlflow_key(&"k".repeat(300)).len(), 250);
    }

    #[test]
    fn targets_must_be_http() {
        assert!(MlflowTarget::new("http://127.0.0.1:5000/", "e").is_ok());
        assert_eq!(
            MlflowTarget::new("https://m.example/", "e").unwrap().uri,
            "https://m.example"
        );
        assert!(MlflowTarget::new("file:./mlruns", "e").is_err());
        assert!(MlflowTarget::new("http://", "e").is_err());
        assert!(MlflowTarget::new("http://h", " ").is_err());
    }

    #[test]
    fn empty_uri_turns_mlflow_off() {
        let c = TrackingConfig {
            uri: Some(String::new()),
            experiment: None,
        };
        assert_eq!(c.mlflow_target().unwrap(), None);
        let c = TrackingConfig {
            uri: Some("http://h:1".into()),
            experiment: Some("exp".into()),
        };
        let t = c.mlflow_target().unwrap().unwrap();
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://h:1", "exp")
        );
        let bad = TrackingConfig {
            uri: Some("databricks".into()),
            experiment: None,
        };
        let e = bad.mlflow_target().unwrap_err().to_string();
        assert!(e.starts_with("tracking.uri: `databricks`"), "{e}");
    }
}
