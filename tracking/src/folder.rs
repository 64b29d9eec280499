//! The run folder on disk: what each file holds, how it is written, and how it is read back.
//!
//! ```text
//! <run>/run.json       name, kind, recipe, status, start/end time, pid/host, mlflow run id
//! <run>/params.json    flat {"section.key": "value"} map
//! <run>/metrics.jsonl  {"step", "key", "value", "timestamp"} per line, appended and flushed
//! <run>/tags.json      git commit, host, user, command line, user tags, artifact references
//! <run>/artifacts/     copied files
//! <run>/mlflow.json    how far the MLflow mirror got (only when MLflow is used)
//! ```
//! Whole files are replaced atomically (temp file + rename); metrics.jsonl is only appended to.

use crate::error::{Result, TrackingError};
use crate::mlflow::SyncState;
use crate::system;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub const RUN_JSON: &str = "run.json";
pub const PARAMS_JSON: &str = "params.json";
pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const TAGS_JSON: &str = "tags.json";
pub const ARTIFACTS_DIR: &str = "artifacts";
pub const MLFLOW_JSON: &str = "mlflow.json";
/// Tags whose key starts with this are references to files kept outside the run folder
/// (checkpoints, token shards): recorded, not copied.
pub const REF_TAG_PREFIX: &str = "artifact_ref.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Running,
    Finished,
    Failed,
    Killed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Killed => "KILLED",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Train,
    Eval,
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunKind::Train => "train",
            RunKind::Eval => "eval",
        })
    }
}

/// One start of the process that wrote the run (the first, then one per resume).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub start_time: u64,
    pub pid: u32,
    pub host: String,
    /// The process's start time in clock ticks since boot, so a recycled pid is not mistaken
    /// for the writer still being alive.
    #[serde(default)]
    pub proc_start: Option<u64>,
    pub command_line: Vec<String>,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub name: String,
    pub kind: RunKind,
    #[serde(default)]
    pub recipe: Option<String>,
    pub status: Status,
    /// Milliseconds since the Unix epoch.
    pub start_time: u64,
    #[serde(default)]
    pub end_time: Option<u64>,
    /// Random id, also set as the MLflow tag `anvil.uid`, so a retried `runs/create` whose
    /// answer was lost finds the run it made instead of making a second one.
    pub uid: String,
    #[serde(default)]
    pub mlflow_run_id: Option<String>,
    pub attempts: Vec<Attempt>,
}

impl RunMeta {
    /// The status a reader should believe: a run still marked RUNNING whose writer process is
    /// gone (SIGKILL, power loss, Ctrl-C) was killed.
    pub fn effective_status(&self) -> Status {
        if self.status != Status::Running {
            return self.status;
        }
        match self.attempts.last() {
            Some(a) if system::process_gone(a) => Status::Killed,
            _ => Status::Running,
        }
    }
}

/// One line of metrics.jsonl. Non-finite values are written as the strings "NaN", "Infinity",
/// "-Infinity" (JSON has no such numbers; MLflow's REST API reads the same strings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRecord<'a> {
    pub step: u64,
    pub key: &'a str,
    pub value: f64,
    pub timestamp: u64,
}

/// A JSON value for a metric: a number, or one of the strings JSON uses for non-finite values.
pub fn metric_value_json(v: f64) -> serde_json::Value {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        v.into()
    }
}

fn parse_metric_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

impl MetricRecord<'_> {
    pub fn to_line(&self) -> String {
        let mut s = serde_json::json!({
            "step": self.step,
            "key": self.key,
            "value": metric_value_json(self.value),
            "timestamp": self.timestamp,
        })
        .to_string();
        s.push('\n');
        s
    }
}

/// An owned metric read back from metrics.jsonl.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub step: u64,
    pub key: String,
    pub value: f64,
    pub timestamp: u64,
}

impl Metric {
    /// Parse one line; `None` for a line that is not a metric (a torn write from a killed run).
    pub fn parse(line: &str) -> Option<Metric> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Metric {
            step: v.get("step")?.as_u64()?,
            key: v.get("key")?.as_str()?.to_string(),
            value: parse_metric_value(v.get("value")?)?,
            timestamp: v.get("timestamp")?.as_u64()?,
        })
    }
}

/// A temp sibling of `path` unique to this process and call (threads of one run may write files
/// at once).
pub fn tmp_path(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Write `bytes` to `path` atomically: temp sibling, optional fsync, rename. The fsync is for
/// files that must survive power loss; a process kill never loses a renamed file.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(TrackingError::io(path, e));
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializable value");
    bytes.push(b'\n');
    write_atomic(path, &bytes, sync)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| TrackingError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrackingError::invalid(path, e.to_string()))
}

/// A JSON file that may not exist yet: missing reads as the default.
pub fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    if !path.exists() {
        return Ok(T::default());
    }
    read_json(path)
}

/// Every metric of a run, by key, in the order logged, plus how many lines could not be read.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub series: BTreeMap<String, Vec<Metric>>,
    pub bad_lines: usize,
}

impl Metrics {
    /// One point per step (the last value logged at it, which is what a resumed run that
    /// repeated steps after restoring a checkpoint means), sorted by step.
    pub fn by_step(&self, key: &str) -> Vec<(u64, f64)> {
        let mut m: BTreeMap<u64, f64> = BTreeMap::new();
        for p in self.series.get(key).into_iter().flatten() {
            m.insert(p.step, p.value);
        }
        m.into_iter().collect()
    }

    /// The last value logged for `key`.
    pub fn last(&self, key: &str) -> Option<&Metric> {
        self.series.get(key).and_then(|s| s.last())
    }

    /// The smallest finite value logged for `key`.
    pub fn min(&self, key: &str) -> Option<f64> {
        self.series
            .get(key)?
            .iter()
            .map(|p| p.value)
            .filter(|v| v.is_finite())
            .reduce(f64::min)
    }

    /// The largest step of any metric.
    pub fn max_step(&self) -> Option<u64> {
        self.series.values().flatten().map(|p| p.step).max()
    }
}

/// A run folder read back for `anvil runs`.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub mlflow: Option<SyncState>,
}

impl RunFolder {
    pub fn is_run(dir: &Path) -> bool {
        dir.join(RUN_JSON).is_file()
    }

    pub fn open(dir: &Path) -> Result<RunFolder> {
        let run_json = dir.join(RUN_JSON);
        if !run_json.is_file() {
            return Err(TrackingError::invalid(
                dir,
                "not a run folder (no run.json)",
            ));
        }
        let meta: RunMeta = read_json(&run_json)?;
        let mlflow_path = dir.join(MLFLOW_JSON);
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            meta,
            params: read_json_or_default(&dir.join(PARAMS_JSON))?,
            tags: read_json_or_default(&dir.join(TAGS_JSON))?,
            mlflow: if mlflow_path.exists() {
                Some(read_json(&mlflow_path)?)
            } else {
                None
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn metrics(&self) -> Result<Metrics> {
        read_metrics(&self.dir.join(METRICS_JSONL))
    }

    /// Files under artifacts/, relative paths with sizes, sorted.
    pub fn artifacts(&self) -> Result<Vec<(String, u64)>> {
        list_files(&self.dir.join(ARTIFACTS_DIR))
    }

    /// Artifact references: name → path outside the run folder.
    pub fn references(&self) -> Vec<(&str, &str)> {
        self.tags
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(REF_TAG_PREFIX)?, v.as_str())))
            .collect()
    }
}

pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let mut out = Metrics::default();
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TrackingError::io(path, e)),
    };
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| TrackingError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match Metric::parse(&line) {
            Some(m) => out.series.entry(m.key.clone()).or_default().push(m),
            None => out.bad_lines += 1,
        }
    }
    Ok(out)
}

/// Regular files under `root`, recursively, as `/`-separated relative paths with sizes. A missing
/// root is empty.
pub fn list_files(root: &Path) -> Result<Vec<(String, u64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(TrackingError::io(dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| TrackingError::io(dir, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| TrackingError::io(&path, e))?;
            let name = entry.file_name();
            // Temp files of an artifact being copied in right now are not artifacts yet.
            if name.to_string_lossy().ends_with(".tmp") {
                continue;
            }
            if ft.is_dir() {
                walk(root, &path, out)?;
            } else if ft.is_file() {
                let len = entry
                    .metadata()
                    .map_err(|e| TrackingError::io(&path, e))?
                    .len();
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), len));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// The runs found under a root, and the run folders that could not be read (one bad folder must
/// not hide the others).
#[derive(Debug, Default)]
pub struct Discovered {
    pub runs: Vec<RunFolder>,
    pub unreadable: Vec<TrackingError>,
}

/// Run folders under `root`: `root` itself if it is one, else its children that are (one level
/// down, then two, so `runs/<recipe>/<run>` layouts are found too), sorted by start time.
pub fn discover(root: &Path) -> Result<Discovered> {
    if RunFolder::is_run(root) {
        return Ok(Discovered {
            runs: vec![RunFolder::open(root)?],
            unreadable: vec![],
        });
    }
    let mut dirs = Vec::new();
    let children = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        match fs::read_dir(d) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(|e| TrackingError::io(d, e))?;
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        v.push(e.path());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrackingError::io(d, e)),
        }
        Ok(v)
    };
    for c in children(root)? {
        if RunFolder::is_run(&c) {
            dirs.push(c);
        } else {
            dirs.extend(children(&c)?.into_iter().filter(|g| RunFolder::is_run(g)));
        }
    }
    let mut found = Discovered::default();
    for d in &dirs {
        match RunFolder::open(d) {
            Ok(r) => found.runs.push(r),
            Err(e) => found.unreadable.push(e),
        }
    }
    found
        .runs
        .sort_by(|a, b| (a.meta.start_time, &a.meta.name).cmp(&(b.meta.start_time, &b.meta.name)));
    Ok(found)
}

/// A run named on the command line: a path to a run folder, or a run's folder name or `name`
/// under `root`.
pub fn resolve(spec: &str, root: &Path) -> Result<RunFolder> {
    let p = Path::new(spec);
    if RunFolder::is_run(p) {
        return RunFolder::open(p);
    }
    if RunFolder::is_run(&root.join(spec)) {
        return RunFolder::open(&root.join(spec));
    }
    let runs = discover(root).map(|d| d.runs).unwrap_or_default();
    let hits: Vec<&RunFolder> = runs
        .iter()
        .filter(|r| r.meta.name == spec || r.dir.file_name().is_some_and(|n| n == spec))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let names: Vec<&str> = runs.iter().map(|r| r.name()).collect();
            Err(TrackingError::Config(format!(
                "no run `{spec}`: not a run folder, and no run of that name under {}{}",
                root.display(),
                if names.is_empty() {
                    " (it has none)".to_string()
                } else {
                    format!(" (runs there: {})", names.join(", "))
                }
            )))
        }
        many => Err(TrackingError::Config(format!(
            "run name `{spec}` is ambiguous under {}: {}; give a path",
            root.display(),
            many.iter()
                .map(|r| r.dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
