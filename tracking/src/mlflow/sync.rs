//! Making an MLflow run match a run folder: one pass ([`Mirror::sync_once`]), the background
//! [`Worker`] that repeats it while a run logs, and [`sync_run`] for `anvil runs sync`.

use super::client::{Client, MlflowError};
use super::{MlflowTarget, SyncState, mlflow_key, truncate_chars};
use crate::error::{Result, TrackingError};
use crate::folder::{
    self, ARTIFACTS_DIR, METRICS_JSONL, MLFLOW_JSON, Metric, PARAMS_JSON, RUN_JSON, RunMeta,
    Status, TAGS_JSON,
};
use crate::system;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// MLflow's log-batch limits (mlflow/utils/validation.py).
const MAX_METRICS_PER_BATCH: usize = 1000;
const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
const MAX_PARAM_VAL_LENGTH: usize = 6000;
const MAX_TAG_VAL_LENGTH: usize = 8000;
/// The server refuses requests over 1 MB; stay well under it.
const MAX_BATCH_BYTES: usize = 800_000;
/// metrics.jsonl is read in chunks this size, so a long backlog is not loaded at once.
const READ_CHUNK: usize = 4 << 20;

pub(crate) struct Mirror {
    dir: PathBuf,
    client: Client,
    target: MlflowTarget,
    pub state: SyncState,
    meta: Arc<Mutex<RunMeta>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not stop the mirror (or the run) from recording what it has.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mirror {
    /// A mirror of the run in `dir` to `target`, continuing from `mlflow.json` when it is for the
    /// same server and experiment, from scratch otherwise.
    pub fn new(dir: &Path, target: MlflowTarget, meta: Arc<Mutex<RunMeta>>) -> Result<Mirror> {
        let saved: Option<SyncState> = {
            let p = dir.join(MLFLOW_JSON);
            if p.exists() {
                Some(folder::read_json(&p)?)
            } else {
                None
            }
        };
        let state = match saved {
            Some(s) if s.uri == target.uri && s.experiment == target.experiment => s,
            _ => SyncState {
                uri: target.uri.clone(),
                experiment: target.experiment.clone(),
                ..SyncState::default()
            },
        };
        let mut m = Mirror {
            dir: dir.to_path_buf(),
            client: Client::new(&target.uri, target.request_timeout),
            target,
            state,
            meta,
        };
        m.save()?;
        Ok(m)
    }

    fn save(&mut self) -> Result<()> {
        folder::write_json(&self.dir.join(MLFLOW_JSON), &self.state, false)
    }

    fn mlflow_err(e: MlflowError) -> TrackingError {
        TrackingError::Mlflow(e)
    }

    /// One pass: send everything in the folder the server does not have yet.
    pub fn sync_once(&mut self) -> Result<()> {
        let meta = lock(&self.meta).clone();
        let res = self.sync_inner(&meta);
        match &res {
            Ok(()) => {
                self.state.last_error = None;
                self.state.last_sync = Some(system::now_ms());
            }
            Err(e) => self.state.last_error = Some(e.to_string()),
        }
        self.save()?;
        res
    }

    fn sync_inner(&mut self, meta: &RunMeta) -> Result<()> {
        let run_id = self.ensure_run(meta)?;
        let status = meta.effective_status();
        // A resumed run was marked finished on the server by its previous attempt.
        if status == Status::Running && self.state.status.as_deref().is_some_and(|s| s != "RUNNING")
        {
            self.client
                .update_run(&run_id, "RUNNING", None)
                .map_err(Self::mlflow_err)?;
            self.state.status = Some("RUNNING".into());
            self.save()?;
        }
        self.sync_params(&run_id)?;
        self.sync_tags(&run_id, meta)?;
        self.sync_metrics(&run_id)?;
        self.sync_artifacts()?;
        if status != Status::Running && self.state.status.as_deref() != Some(status.as_str()) {
            self.client
                .update_run(&run_id, status.as_str(), meta.end_time)
                .map_err(Self::mlflow_err)?;
            self.state.status = Some(status.as_str().into());
            self.save()?;
        }
        Ok(())
    }

    fn ensure_run(&mut self, meta: &RunMeta) -> Result<String> {
        if let Some(id) = &self.state.run_id {
            return Ok(id.clone());
        }
        let exp = match &self.state.experiment_id {
            Some(e) => e.clone(),
            None => {
                let e = self
                    .client
                    .experiment_id(&self.target.experiment)
                    .map_err(Self::mlflow_err)?;
                self.state.experiment_id = Some(e.clone());
                e
            }
        };
        let found = self
            .client
            .find_run(&exp, &meta.uid)
            .map_err(Self::mlflow_err)?;
        let (id, uri) = match found {
            Some(r) => r,
            None => self
                .client
                .create_run(
                    &exp,
                    &meta.name,
                    meta.start_time,
                    system::user().as_deref(),
                    &[("anvil.uid".to_string(), meta.uid.clone())],
                )
                .map_err(Self::mlflow_err)?,
        };
        self.state.run_id = Some(id.clone());
        self.state.artifact_uri = Some(uri);
        self.state.status = Some("RUNNING".into());
        self.save()?;
        let mut m = lock(&self.meta);
        m.mlflow_run_id = Some(id.clone());
        folder::write_json(&self.dir.join(RUN_JSON), &*m, false)?;
        Ok(id)
    }

    /// Send `pending` key/values as params or tags, in batches within MLflow's limits,
    /// recording each batch as sent.
    fn send_kv(
        &mut self,
        run_id: &str,
        pending: Vec<(String, String)>,
        params: bool,
    ) -> Result<()> {
        let mut batch: Vec<(String, String)> = Vec::new();
        let mut bytes = 0;
        let mut pending = pending.into_iter().peekable();
        while let Some((k, v)) = pending.next() {
            bytes += k.len() + v.len() + 32;
            batch.push((k, v));
            let full = batch.len() == MAX_PARAMS_TAGS_PER_BATCH
                || pending
                    .peek()
                    .is_some_and(|(k, v)| bytes + k.len() + v.len() + 32 > MAX_BATCH_BYTES);
            if full || pending.peek().is_none() {
                let items: Vec<Value> = batch
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                let (p, t) = if params {
                    (items, vec![])
                } else {
                    (vec![], items)
                };
                self.client
                    .log_batch(run_id, &[], &p, &t)
                    .map_err(Self::mlflow_err)?;
                let sent = if params {
                    &mut self.state.params
                } else {
                    &mut self.state.tags
                };
                sent.extend(batch.drain(..));
                bytes = 0;
                self.save()?;
            }
        }
        Ok(())
    }

    fn sync_params(&mut self, run_id: &str) -> Result<()> {
        let params: BTreeMap<String, String> =
            folder::read_json_or_default(&self.dir.join(PARAMS_JSON))?;
        // A key the server already has with another value is left alone: MLflow params are
        // write-once (Run::log_params refuses such changes; only a hand edit gets here).
        let pending: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| {
                (
                    mlflow_key(k),
                    truncate_chars(v, MAX_PARAM_VAL_LENGTH).to_string(),
                )
            })
            .filter(|(k, _)| !self.state.params.contains_key(k))
            .collect();
        self.send_kv(run_id, pending, true)
    }

    fn sync_tags(&mut self, run_id: &str, meta: &RunMeta) -> Result<()> {
        let local: BTreeMap<String, String> =
            folder::read_json_or_default(&self.dir.join(TAGS_JSON))?;
        let mut tags: BTreeMap<String, String> = local
            .iter()
            .map(|(k, v)| (mlflow_key(k), v.clone()))
            .collect();
        // MLflow's own system tags, so its UI shows the commit, user and source.
        if let Some(c) = local.get("git.commit") {
            tags.insert("mlflow.source.git.commit".into(), c.clone());
        }
        if let Some(u) = local.get("user") {
            tags.insert("mlflow.user".into(), u.clone());
        }
        tags.insert("mlflow.source.type".into(), "LOCAL".into());
        if let Some(a) = meta.attempts.first().and_then(|a| a.command_line.first()) {
            tags.insert("mlflow.source.name".into(), a.clone());
        }
        tags.insert("anvil.kind".into(), meta.kind.to_string());
        if let Some(r) = &meta.recipe {
            tags.insert("anvil.recipe".into(), r.clone());
        }
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        tags.insert("anvil.run_dir".into(), dir.display().to_string());
        let pending: Vec<(String, String)> = tags
            .into_iter()
            .map(|(k, v)| (k, truncate_chars(&v, MAX_TAG_VAL_LENGTH).to_string()))
            .filter(|(k, v)| self.state.tags.get(k) != Some(v))
            .collect();
        self.send_kv(run_id, pending, false)
    }

    fn sync_metrics(&mut self, run_id: &str) -> Result<()> {
        let path = self.dir.join(METRICS_JSONL);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(TrackingError::io(&path, e)),
        };
        let len = f.metadata().map_err(|e| TrackingError::io(&path, e))?.len();
        if self.state.metrics_offset > len {
            // The file was replaced by a shorter one: send it all again (MLflow ignores exact
            // duplicates, so nothing is doubled).
            self.state.metrics_offset = 0;
            self.state.metrics_synced = 0;
            self.state.bad_lines = 0;
        }
        loop {
            let start = self.state.metrics_offset;
            if start >= len {
                return Ok(());
            }
            f.seek(SeekFrom::Start(start))
                .map_err(|e| TrackingError::io(&path, e))?;
            let mut buf = Vec::new();
            (&mut f)
                .take(READ_CHUNK.min((len - start) as usize) as u64)
                .read_to_end(&mut buf)
                .map_err(|e| TrackingError::io(&path, e))?;
            // Only whole lines: the writer may be halfway through the last one.
            let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
                if buf.len() >= READ_CHUNK {
                    return Err(TrackingError::invalid(
                        &path,
                        format!("line at byte {start} is over {READ_CHUNK} bytes"),
                    ));
                }
                return Ok(());
            };
            let mut batch: Vec<Value> = Vec::new();
            let mut batch_bytes = 0;
            // Bytes of buf already counted in the offset, and lines/bad lines since then.
            let mut sent_upto = 0usize;
            let (mut lines, mut bad) = (0u64, 0u64);
            let mut pos = 0usize;
            while pos <= end {
                let nl = pos + buf[pos..=end].iter().position(|&b| b == b'\n').unwrap();
                let line = String::from_utf8_lossy(&buf[pos..nl]);
                pos = nl + 1;
                if line.trim().is_empty() {
                    continue;
                }
                match Metric::parse(&line) {
                    Some(m) => {
                        batch.push(json!({
                            "key": mlflow_key(&m.key),
                            "value": folder::metric_value_json(m.value),
                            "timestamp": m.timestamp,
                            "step": m.step,
                        }));
                        batch_bytes += line.len() + 16;
                        lines += 1;
                    }
                    None => bad += 1,
                }
                if batch.len() == MAX_METRICS_PER_BATCH || batch_bytes > MAX_BATCH_BYTES {
                    self.send_metrics(run_id, &mut batch, pos - sent_upto, lines, bad)?;
                    (sent_upto, lines, bad, batch_bytes) = (pos, 0, 0, 0);
                }
            }
            self.send_metrics(run_id, &mut batch, pos - sent_upto, lines, bad)?;
        }
    }

    /// Send one batch and advance the offset past the bytes it covered.
    fn send_metrics(
        &mut self,
        run_id: &str,
        batch: &mut Vec<Value>,
        consumed: usize,
        lines: u64,
        bad: u64,
    ) -> Result<()> {
        if !batch.is_empty() {
            self.client
                .log_batch(run_id, batch, &[], &[])
                .map_err(Self::mlflow_err)?;
        }
        batch.clear();
        self.state.metrics_offset += consumed as u64;
        self.state.metrics_synced += lines;
        self.state.bad_lines += bad;
        self.save()
    }

    /// The path under the artifact proxy for this run, if its artifacts go through the proxy.
    fn artifact_path(&self) -> Option<String> {
        let uri = self.state.artifact_uri.as_deref()?;
        let rest = uri.strip_prefix("mlflow-artifacts:")?;
        // `mlflow-artifacts://host:port/path` names a server; the path is what follows it.
        let path = match rest.strip_prefix("//") {
            Some(r) => &r[r.find('/').unwrap_or(r.len())..],
            None => rest,
        };
        Some(path.trim_matches('/').to_string())
    }

    fn sync_artifacts(&mut self) -> Result<()> {
        let files = folder::list_files(&self.dir.join(ARTIFACTS_DIR))?;
        if files.is_empty() {
            return Ok(());
        }
        let Some(base) = self.artifact_path() else {
            // Artifacts stored elsewhere (s3://, a server path) cannot be sent over REST; they
            // stay in the run folder. Said once, in mlflow.json.
            self.state.artifacts.insert(
                "(not uploaded)".into(),
                format!(
                    "the run's artifact store {:?} is not the server's mlflow-artifacts proxy \
                     (start the server with --serve-artifacts)",
                    self.state.artifact_uri.as_deref().unwrap_or("")
                ),
            );
            return Ok(());
        };
        for (rel, _) in files {
            let path = self.dir.join(ARTIFACTS_DIR).join(&rel);
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let mtime = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let stamp = format!("{}:{mtime}", md.len());
            if self.state.artifacts.get(&rel) == Some(&stamp) {
                continue;
            }
            self.client
                .upload_artifact(&base, &rel, &path)
                .map_err(Self::mlflow_err)?;
            self.state.artifacts.insert(rel, stamp);
            self.save()?;
        }
        Ok(())
    }

    /// Metric lines in metrics.jsonl past the synced offset.
    pub fn pending_metric_lines(&self) -> u64 {
        let path = self.dir.join(METRICS_JSONL);
        let Ok(mut f) = std::fs::File::open(&path) else {
            return 0;
        };
        if f.seek(SeekFrom::Start(self.state.metrics_offset)).is_err() {
            return 0;
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        buf.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

enum Msg {
    Changed,
    Finish(Instant),
}

/// The background thread that keeps a run's MLflow mirror current. The run never waits on it
/// except, bounded, in [`Worker::finish`].
pub(crate) struct Worker {
    tx: Sender<Msg>,
    done: Receiver<()>,
    drain_timeout: Duration,
    request_timeout: Duration,
}

/// Syncs are at most this frequent while a run logs, so metrics go in batches, not one by one.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// While finishing, the server is retried often: the drain deadline is short.
const MAX_BACKOFF_FINISHING: Duration = Duration::from_secs(2);

impl Worker {
    pub fn start(mut mirror: Mirror) -> Worker {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (done_tx, done) = mpsc::channel::<()>();
        let drain_timeout = mirror.target.drain_timeout;
        let request_timeout = mirror.target.request_timeout;
        std::thread::Builder::new()
            .name("mlflow-sync".into())
            .spawn(move || {
                run_worker(&mut mirror, rx);
                let _ = done_tx.send(());
            })
            .expect("spawn the MLflow sync thread");
        Worker {
            tx,
            done,
            drain_timeout,
            request_timeout,
        }
    }

    /// Something was written to the run folder.
    pub fn notify(&self) {
        let _ = self.tx.send(Msg::Changed);
    }

    /// Ask the worker to send what is left and wait for it, at most the drain timeout (plus one
    /// request in flight).
    pub fn finish(self) {
        let deadline = Instant::now() + self.drain_timeout;
        let _ = self.tx.send(Msg::Finish(deadline));
        let _ = self
            .done
            .recv_timeout(self.drain_timeout + self.request_timeout + Duration::from_secs(1));
    }
}

fn run_worker(m: &mut Mirror, rx: Receiver<Msg>) {
    let mut dirty = true;
    let mut finishing: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    let mut next_try = Instant::now();
    let mut down = false;
    loop {
        let now = Instant::now();
        let wait = if dirty {
            next_try.saturating_duration_since(now)
        } else if let Some(d) = finishing {
            d.saturating_duration_since(now)
        } else {
            Duration::from_secs(3600)
        };
        match rx.recv_timeout(wait) {
            Ok(msg) => {
                let mut handle = |msg| match msg {
                    Msg::Changed => dirty = true,
                    Msg::Finish(d) => {
                        finishing = Some(d);
                        dirty = true;
                        // Do not sit out a long backoff: try now, then often.
                        next_try = Instant::now();
                        backoff = backoff.min(Duration::from_millis(250));
                    }
                };
                handle(msg);
                while let Ok(msg) = rx.try_recv() {
                    handle(msg);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The run was dropped without finish (its Drop finishes it, so this is a process
            // tearing down): one last short attempt.
            Err(RecvTimeoutError::Disconnected) => {
                if finishing.is_none() {
                    finishing = Some(Instant::now() + Duration::from_secs(2));
                    next_try = Instant::now();
                }
            }
        }
        let now = Instant::now();
        if dirty && now >= next_try {
            match m.sync_once() {
                Ok(()) => {
                    dirty = false;
                    backoff = Duration::ZERO;
                    if down {
                        eprintln!("MLflow server {} is back; caught up", m.target.uri);
                        down = false;
                    }
                    next_try = now
                        + if finishing.is_some() {
                            Duration::ZERO
                        } else {
                            MIN_INTERVAL
                        };
                }
                Err(TrackingError::Mlflow(e)) if e.is_transient() => {
                    if !down {
                        eprintln!("warning: {e}; logging locally, retrying in the background");
                        down = true;
                    }
                    let cap = if finishing.is_some() {
                        MAX_BACKOFF_FINISHING
                    } else {
                        MAX_BACKOFF
                    };
                    backoff = (backoff * 2).clamp(Duration::from_millis(500), cap);
                    next_try = Instant::now() + backoff;
                }
                Err(e) => {
                    eprintln!(
                        "warning: {e}; stopped sending this run to MLflow (its folder is \
                         complete): fix the cause, then `anvil runs sync {}`",
                        m.dir.display()
                    );
                    return;
                }
            }
        }
        if let Some(deadline) = finishing {
            if !dirty {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: {} metric lines of {} not sent to MLflow yet ({}); send them with \
                     `anvil runs sync {}`",
                    m.pending_metric_lines(),
                    m.dir.display(),
                    m.state.last_error.as_deref().unwrap_or("still sending"),
                    m.dir.display()
                );
                return;
            }
        }
    }
}

/// What `anvil runs sync` did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub uri: String,
    pub experiment: String,
    pub run_id: String,
    /// Metric lines sent by this call, and the run's total now on the server.
    pub metrics_sent: u64,
    pub metrics_total: u64,
    pub params: usize,
    pub tags: usize,
    pub artifacts: usize,
}

/// Send whatever the server does not have of the run in `dir`, to `target` or, when `None`, to
/// the server in its `mlflow.json`. A few quick retries; then the error.
pub fn sync_run(dir: &Path, target: Option<MlflowTarget>) -> Result<SyncReport> {
    let run = folder::RunFolder::open(dir)?;
    if run.meta.effective_status() == Status::Running {
        let pid = run.meta.attempts.last().map(|a| a.pid).unwrap_or(0);
        return Err(TrackingError::Config(format!(
            "{}: run is still running (pid {pid}); its own process mirrors it",
            dir.display()
        )));
    }
    let target = match target {
        Some(t) => t,
        None => match &run.mlflow {
            Some(s) => MlflowTarget::new(&s.uri, &s.experiment)
                .map_err(|e| TrackingError::invalid(dir.join(MLFLOW_JSON), e))?,
            None => {
                return Err(TrackingError::Config(format!(
                    "{}: never sent to MLflow; give --uri or set MLFLOW_TRACKING_URI",
                    dir.display()
                )));
            }
        },
    };
    let meta = Arc::new(Mutex::new(run.meta.clone()));
    let mut m = Mirror::new(dir, target, meta)?;
    let before = m.state.metrics_synced;
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        match m.sync_once() {
            Ok(()) => break,
            Err(TrackingError::Mlflow(e)) if e.is_transient() && tries < 3 => {
                tries += 1;
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(SyncReport {
        uri: m.state.uri.clone(),
        experiment: m.state.experiment.clone(),
        run_id: m.state.run_id.clone().unwrap_or_default(),
        metrics_sent: m.state.metrics_synced - before,
        metrics_total: m.state.metrics_synced,
        params: m.state.params.len(),
        tags: m.state.tags.len(),
        artifacts: m.state.artifacts.len(),
    })
}
