//! [`Run`]: the handle training and evaluation log through. Every call writes the run folder
//! first (metrics are appended with one write per call, so a killed process keeps everything
//! logged before the kill), then nudges the MLflow mirror, which never makes the caller wait.

use crate::error::{Result, TrackingError};
use crate::folder::{
    self, ARTIFACTS_DIR, Attempt, METRICS_JSONL, MLFLOW_JSON, MetricRecord, PARAMS_JSON,
    REF_TAG_PREFIX, RUN_JSON, RunKind, RunMeta, Status, TAGS_JSON,
};
use crate::mlflow::{Mirror, MlflowTarget, SyncState, Worker};
use crate::system;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a new run is.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Shown in `anvil runs list` and as the MLflow run name; empty: the folder's name.
    pub name: String,
    pub kind: RunKind,
    /// The command line that started the run (`std::env::args()`).
    pub command_line: Vec<String>,
    /// The recipe file the run was made from, if any.
    pub recipe: Option<String>,
    /// Mirror the run to this MLflow server as well (see `TrackingConfig::mlflow_target`).
    pub mlflow: Option<MlflowTarget>,
}

struct Inner {
    metrics: File,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    finished: bool,
}

/// An open run. Methods take `&self` so one run can be shared (`Arc<Run>`) between a training
/// loop and, say, an evaluation thread. Dropped without [`Run::finish`], it finishes as FAILED
/// (an early `?` return or a panic).
pub struct Run {
    dir: PathBuf,
    inner: Mutex<Inner>,
    meta: Arc<Mutex<RunMeta>>,
    worker: Mutex<Option<Worker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Logging must keep working after a panic on another thread that held the lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn attempt(command_line: &[String]) -> Attempt {
    let pid = std::process::id();
    Attempt {
        start_time: system::now_ms(),
        pid,
        host: system::hostname(),
        proc_start: system::proc_start(pid),
        command_line: command_line.to_vec(),
    }
}

fn check_key(path: &Path, what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.chars().any(|c| c.is_control()) {
        return Err(TrackingError::invalid(
            path,
            format!("{what} key {key:?} must be non-empty text without control characters"),
        ));
    }
    Ok(())
}

impl Run {
    /// Start a new run in `dir` (created if missing; refused if it already holds a run).
    pub fn create(dir: &Path, info: RunInfo) -> Result<Run> {
        if folder::RunFolder::is_run(dir) {
            return Err(TrackingError::invalid(
                dir,
                "already holds a run (run.json); resume it or choose another folder",
            ));
        }
        fs::create_dir_all(dir.join(ARTIFACTS_DIR)).map_err(|e| TrackingError::io(dir, e))?;
        let name = if info.name.is_empty() {
            std::path::absolute(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "run".into())
        } else {
            info.name
        };
        let first = attempt(&info.command_line);
        let meta = RunMeta {
            name,
            kind: info.kind,
            recipe: info.recipe,
            status: Status::Running,
            start_time: first.start_time,
            end_time: None,
            uid: system::random_id(),
            mlflow_run_id: None,
            attempts: vec![first],
        };
        let mut tags = BTreeMap::new();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        if let Some((commit, dirty)) = system::git_commit(&cwd) {
            tags.insert("git.commit".to_string(), commit);
            if dirty {
                tags.insert("git.dirty".to_string(), "true".to_string());
            }
        }
        tags.insert("host".into(), system::hostname());
        if let Some(u) = system::user() {
            tags.insert("user".into(), u);
        }
        tags.insert("command_line".into(), shell_join(&info.command_line));
        folder::write_json(&dir.join(TAGS_JSON), &tags, false)?;
        folder::write_json(
            &dir.join(PARAMS_JSON),
            &BTreeMap::<String, String>::new(),
            false,
        )?;
        // A fresh run in a folder that held one before (deleted run.json) starts clean.
        let _ = fs::remove_file(dir.join(MLFLOW_JSON));
        let metrics_path = dir.join(METRICS_JSONL);
        let metrics = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&metrics_path)
            .map_err(|e| TrackingError::io(&metrics_path, e))?;
        // run.json last: its presence is what makes the folder a run.
        folder::write_json(&dir.join(RUN_JSON), &meta, true)?;
        Self::open(dir, meta, metrics, BTreeMap::new(), tags, info.mlflow)
    }

    /// Continue the run in `dir` (a resumed training run): appends to the same files, marks it
    /// RUNNING again, and keeps mirroring to the MLflow run it had (or starts mirroring to
    /// `mlflow`, if given and different).
    pub fn resume(dir: &Path, mlflow: Option<MlflowTarget>) -> Result<Run> {
        let run_json = dir.join(RUN_JSON);
        if !run_json.is_file() {
            return Err(TrackingError::invalid(
                dir,
                "no run to resume (no run.json)",
            ));
        }
        let mut meta: RunMeta = folder::read_json(&run_json)?;
        let params = folder::read_json_or_default(&dir.join(PARAMS_JSON))?;
        let tags = folder::read_json_or_default(&dir.join(TAGS_JSON))?;
        let metrics_path = dir.join(METRICS_JSONL);
        let mut metrics = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| TrackingError::io(&metrics_path, e))?;
        // A kill mid-write can leave a torn last line: end it, so the next record starts on a
        // line of its own and only the torn one is unreadable.
        let len = metrics
            .metadata()
            .map_err(|e| TrackingError::io(&metrics_path, e))?
            .len();
        if len > 0 {
            let mut last = [0u8];
            metrics
                .seek(SeekFrom::Start(len - 1))
                .and_then(|_| metrics.read_exact(&mut last))
                .map_err(|e| TrackingError::io(&metrics_path, e))?;
            if last[0] != b'\n' {
                metrics
                    .write_all(b"\n")
                    .map_err(|e| TrackingError::io(&metrics_path, e))?;
            }
        }
        meta.status = Status::Running;
        meta.end_time = None;
        meta.attempts
            .push(attempt(&std::env::args().collect::<Vec<_>>()));
        folder::write_json(&run_json, &meta, true)?;
        let mlflow = match mlflow {
            Some(t) => Some(t),
            None => {
                let p = dir.join(MLFLOW_JSON);
                if p.exists() {
                    let s: SyncState = folder::read_json(&p)?;
                    Some(
                        MlflowTarget::new(&s.uri, &s.experiment)
                            .map_err(|e| TrackingError::invalid(&p, e))?,
                    )
                } else {
                    None
                }
            }
        };
        Self::open(dir, meta, metrics, params, tags, mlflow)
    }

    fn open(
        dir: &Path,
        meta: RunMeta,
        metrics: File,
        params: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
        mlflow: Option<MlflowTarget>,
    ) -> Result<Run> {
        let meta = Arc::new(Mutex::new(meta));
        let worker = match mlflow {
            Some(t) => {
                let w = Worker::start(Mirror::new(dir, t, meta.clone())?);
                w.notify();
                Some(w)
            }
            None => None,
        };
        Ok(Run {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                metrics,
                params,
                tags,
                finished: false,
            }),
            meta,
            worker: Mutex::new(worker),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn name(&self) -> String {
        lock(&self.meta).name.clone()
    }

    /// How many times the run was started: 1, plus one per [`Run::resume`].
    pub fn attempts(&self) -> usize {
        lock(&self.meta).attempts.len()
    }

    /// The MLflow run id, once the mirror has created the run on the server.
    pub fn mlflow_run_id(&self) -> Option<String> {
        lock(&self.meta).mlflow_run_id.clone()
    }

    fn notify(&self) {
        if let Some(w) = lock(&self.worker).as_ref() {
            w.notify();
        }
    }

    /// Record params (merged into params.json). Like MLflow's, params are write-once: logging a
    /// key again with the same value is a no-op, with another value an error.
    pub fn log_params<K: Into<String>, V: Into<String>>(
        &self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let path = self.dir.join(PARAMS_JSON);
        let mut inner = lock(&self.inner);
        let mut next = inner.params.clone();
        for (k, v) in params {
            let (k, v) = (k.into(), v.into());
            check_key(&path, "param", &k)?;
            match next.get(&k) {
                Some(old) if *old != v => {
                    return Err(TrackingError::ParamChanged {
                        path,
                        key: k,
                        old: old.clone(),
                        new: v,
                    });
                }
                _ => {
                    next.insert(k, v);
                }
            }
        }
        if next != inner.params {
            folder::write_json(&path, &next, false)?;
            inner.params = next;
            drop(inner);
            self.notify();
        }
        Ok(())
    }

    pub fn log_param(&self, key: &str, value: impl ToString) -> Result<()> {
        self.log_params([(key, value.to_string())])
    }

    pub fn log_metric(&self, step: u64, key: &str, value: f64) -> Result<()> {
        self.log_metrics(step, &[(key, value)])
    }

    /// Append metrics for one step to metrics.jsonl in a single write, so they reach the file
    /// (the kernel) before this returns and survive a kill of the process.
    pub fn log_metrics(&self, step: u64, metrics: &[(&str, f64)]) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(METRICS_JSONL);
        let timestamp = system::now_ms();
        let mut lines = String::new();
        for &(key, value) in metrics {
            check_key(&path, "metric", key)?;
            lines.push_str(
                &MetricRecord {
                    step,
                    key,
                    value,
                    timestamp,
                }
                .to_line(),
            );
        }
        lock(&self.inner)
            .metrics
            .write_all(lines.as_bytes())
            .map_err(|e| TrackingError::io(&path, e))?;
        self.notify();
        Ok(())
    }

    pub fn set_tag(&self, key: &str, value: impl Into<String>) -> Result<()> {
        self.set_tags([(key, value)])
    }

    pub fn set_tags<K: Into<String>, V: Into<String>>(
        &self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let path = self.dir.join(TAGS_JSON);
        let mut inner = lock(&self.inner);
        let mut next = inner.tags.clone();
        for (k, v) in tags {
            let k = k.into();
            check_key(&path, "tag", &k)?;
            next.insert(k, v.into());
        }
        if next != inner.tags {
            folder::write_json(&path, &next, false)?;
            inner.tags = next;
            drop(inner);
            self.notify();
        }
        Ok(())
    }

    /// Copy a file into `artifacts/` under its own name; returns where it went.
    pub fn log_artifact(&self, path: &Path) -> Result<PathBuf> {
        let name = path
            .file_name()
            .ok_or_else(|| TrackingError::invalid(path, "artifact path has no file name"))?
            .to_string_lossy()
            .into_owned();
        self.log_artifact_as(path, &name)
    }

    /// The artifact path `rel` (`/`-separated, under `artifacts/`) must stay inside it.
    fn artifact_dest(&self, rel: &str) -> Result<PathBuf> {
        let ok = !rel.is_empty()
            && rel
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'));
        if !ok {
            return Err(TrackingError::invalid(
                self.dir.join(ARTIFACTS_DIR),
                format!("artifact name {rel:?} must be a relative path without `.`/`..`"),
            ));
        }
        let dest = self.dir.join(ARTIFACTS_DIR).join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| TrackingError::io(parent, e))?;
        }
        Ok(dest)
    }

    /// Copy a file into `artifacts/<rel>` (atomically: readers and the mirror never see half a
    /// file).
    pub fn log_artifact_as(&self, path: &Path, rel: &str) -> Result<PathBuf> {
        let dest = self.artifact_dest(rel)?;
        let tmp = folder::tmp_path(&dest);
        if let Err(e) = fs::copy(path, &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(TrackingError::io(path, e));
        }
        fs::rename(&tmp, &dest).map_err(|e| TrackingError::io(&dest, e))?;
        self.notify();
        Ok(dest)
    }

    /// Write `bytes` as `artifacts/<rel>`.
    pub fn log_artifact_bytes(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf> {
        let dest = self.artifact_dest(rel)?;
        folder::write_atomic(&dest, bytes, false)?;
        self.notify();
        Ok(dest)
    }

    /// Record where a large file lives (a checkpoint, token shards) without copying it: the tag
    /// `artifact_ref.<name>` holds its absolute path.
    pub fn log_artifact_ref(&self, name: &str, path: &Path) -> Result<()> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.set_tag(
            &format!("{REF_TAG_PREFIX}{name}"),
            abs.display().to_string(),
        )
    }

    /// Mark the run done with `status`, then give the MLflow mirror (if any) up to its drain
    /// timeout to send what is left; anything still unsent is recorded in mlflow.json for
    /// `anvil runs sync`. Only the first call does anything.
    pub fn finish(&self, status: Status) -> Result<()> {
        {
            let mut inner = lock(&self.inner);
            if inner.finished {
                return Ok(());
            }
            inner.finished = true;
            let path = self.dir.join(METRICS_JSONL);
            inner
                .metrics
                .sync_data()
                .map_err(|e| TrackingError::io(&path, e))?;
        }
        let res = {
            let mut meta = lock(&self.meta);
            meta.status = status;
            meta.end_time = Some(system::now_ms());
            folder::write_json(&self.dir.join(RUN_JSON), &*meta, true)
        };
        // Taken out first: the lock is not held during the (bounded) wait.
        let worker = lock(&self.worker).take();
        if let Some(w) = worker {
            w.finish();
        }
        res
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.finish(Status::Failed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Run>();
    }
}
