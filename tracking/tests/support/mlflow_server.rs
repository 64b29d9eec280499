//! A real `mlflow server` for tests, and readers of its REST API. Shared by
//! `tracking/tests/mlflow.rs` and the trainer's end-to-end tests (`tests/cli_train.rs`), which
//! include this file with `#[path]`; the including crate needs `ureq`, `libc` and `serde_json`.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn mlflow_exe() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mlflow"))
        .find(|p| p.is_file())
}

/// The mlflow executable, or `None` (after saying why) when the test should be skipped.
pub fn require_mlflow() -> Option<PathBuf> {
    match mlflow_exe() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!(
            "`mlflow` is not on PATH: scripts/test.sh installs it (scripts/requirements-test.txt) \
             into its virtualenv and puts that on PATH"
        ),
        None => {
            eprintln!(
                "note: skipping MLflow test: no `mlflow` on PATH (run scripts/test.sh, or put a \
                 virtualenv with mlflow==3.17.2 on PATH)"
            );
            None
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `mlflow server` in its own process group (it forks a uvicorn worker), stopped on drop.
pub struct Server {
    exe: PathBuf,
    store: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start(exe: &Path, store: &Path) -> Server {
        let mut s = Server {
            exe: exe.to_path_buf(),
            store: store.to_path_buf(),
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.store.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start (again) on the same port and store.
    pub fn restart(&mut self) {
        std::fs::create_dir_all(self.store.join("artifacts")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.join("server.log"))
            .unwrap();
        let child = Command::new(&self.exe)
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.store.join("mlflow.db").display()
            ))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(self.store.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--workers", "1"])
            // The job runner (a dozen huey processes) is for GenAI features; it triples start-up.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        self.child = Some(child);
        let t0 = Instant::now();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        loop {
            if agent
                .get(format!("{}/health", self.uri()))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                panic!("mlflow server exited ({st}):\n{}", self.log_tail());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                panic!("mlflow server not up after 120 s:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The whole process group, at once and without warning, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling the process group we created (pgid = the server's pid).
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pg = -(c.id() as i32);
            // SAFETY: as in kill().
            unsafe { libc::kill(pg, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Stragglers (the uvicorn worker) and a server that ignored SIGTERM.
            unsafe { libc::kill(pg, libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

pub fn get(uri: &str, endpoint: &str, query: &[(&str, &str)]) -> Value {
    let mut rb = ureq::get(format!("{uri}/api/2.0/{endpoint}"));
    for (k, v) in query {
        rb = rb.query(*k, *v);
    }
    let mut r = rb.call().unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// step → value of one metric's whole history on the server.
pub fn history(uri: &str, run_id: &str, key: &str) -> BTreeMap<u64, Value> {
    let v = get(
        uri,
        "mlflow/metrics/get-history",
        &[
            ("run_id", run_id),
            ("metric_key", key),
            ("max_results", "100000"),
        ],
    );
    let mut out = BTreeMap::new();
    for m in v["metrics"].as_array().cloned().unwrap_or_default() {
        let step = m["step"].as_u64().unwrap_or(0);
        assert!(
            out.insert(step, m["value"].clone()).is_none(),
            "{key}: step {step} twice on the server"
        );
    }
    out
}

pub fn kv_list(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
