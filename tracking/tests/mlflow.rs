//! Runs mirrored to a real `mlflow server` (PyPI mlflow, sqlite store, artifact proxy) on a
//! loopback port, read back through MLflow's REST API. Needs the `mlflow` executable on PATH
//! (scripts/test.sh installs it): without it these tests fail under CI and are skipped elsewhere.

use anvil_tracking::{MlflowTarget, Run, RunFolder, RunInfo, RunKind, Status, sync_run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn mlflow_exe() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mlflow"))
        .find(|p| p.is_file())
}

/// The mlflow executable, or `None` (after saying why) when the test should be skipped.
fn require_mlflow() -> Option<PathBuf> {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `mlflow server` in its own process group (it forks a uvicorn worker), stopped on drop.
struct Server {
    exe: PathBuf,
    store: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(exe: &Path, store: &Path) -> Server {
        let mut s = Server {
            exe: exe.to_path_buf(),
            store: store.to_path_buf(),
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.store.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start (again) on the same port and store.
    fn restart(&mut self) {
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
    fn kill(&mut self) {
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

fn get(uri: &str, endpoint: &str, query: &[(&str, &str)]) -> Value {
    let mut rb = ureq::get(format!("{uri}/api/2.0/{endpoint}"));
    for (k, v) in query {
        rb = rb.query(*k, *v);
    }
    let mut r = rb.call().unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// step → value of one metric's whole history on the server.
fn history(uri: &str, run_id: &str, key: &str) -> BTreeMap<u64, Value> {
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

fn kv_list(v: &Value) -> BTreeMap<String, String> {
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

fn target(uri: &str, experiment: &str) -> MlflowTarget {
    MlflowTarget::new(uri, experiment).unwrap()
}

fn info(name: &str, mlflow: MlflowTarget) -> RunInfo {
    RunInfo {
        name: name.into(),
        kind: RunKind::Train,
        command_line: vec!["anvil".into(), "train".into(), "run".into()],
        recipe: Some("recipes/quickstart.toml".into()),
        mlflow: Some(mlflow),
    }
}

fn synced_lines(dir: &Path) -> u64 {
    RunFolder::open(dir)
        .ok()
        .and_then(|r| r.mlflow)
        .map_or(0, |s| s.metrics_synced)
}

#[test]
fn params_metrics_tags_artifacts_reach_mlflow() {
    let Some(exe) = require_mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, &tmp.path().join("server"));
    let uri = server.uri();
    let dir = tmp.path().join("runs/quick-1");
    let run = Run::create(&dir, info("quick-1", target(&uri, "anvil-test"))).unwrap();
    // 150 params: two log-batch calls (100 at most each).
    run.log_params((0..150).map(|i| (format!("p.{i:03}"), format!("v{i}"))))
        .unwrap();
    run.log_param("long", "x".repeat(7000)).unwrap();
    // 700 steps × 2 metrics, + sparse ones: over the 1000-metric batch limit several times.
    for step in 0..700u64 {
        run.log_metrics(
            step,
            &[
                ("train/loss", 5.0 / (step + 1) as f64),
                ("train/lr", step as f64 * 1e-6),
            ],
        )
        .unwrap();
        if step % 100 == 99 {
            run.log_metric(step, "val/loss", step as f64 / 1000.0)
                .unwrap();
        }
    }
    run.log_metric(700, "eval/pass@1", 0.25).unwrap();
    run.log_metric(700, "train/grad_norm", f64::NAN).unwrap();
    run.set_tag("note", "round trip").unwrap();
    let src = tmp.path().join("recipe file.toml");
    std::fs::write(&src, "[train]\nsteps = 700\n").unwrap();
    run.log_artifact(&src).unwrap();
    run.log_artifact_bytes("eval/summary.json", b"{\"pass@1\": 0.25}")
        .unwrap();
    run.log_artifact_ref("checkpoint", &tmp.path().join("ckpt"))
        .unwrap();
    run.finish(Status::Finished).unwrap();

    let local = RunFolder::open(&dir).unwrap();
    let state = local.mlflow.clone().expect("mlflow.json");
    assert_eq!(state.last_error, None);
    assert_eq!(state.metrics_synced, 700 * 2 + 7 + 2);
    let run_id = state.run_id.clone().unwrap();
    assert_eq!(local.meta.mlflow_run_id.as_deref(), Some(run_id.as_str()));

    let r = get(&uri, "mlflow/runs/get", &[("run_id", &run_id)]);
    let info = &r["run"]["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], "quick-1");
    assert_eq!(info["end_time"].as_u64(), local.meta.end_time);
    assert_eq!(info["start_time"].as_u64(), Some(local.meta.start_time));
    let params = kv_list(&r["run"]["data"]["params"]);
    assert_eq!(params.len(), 151);
    assert_eq!(params["p.149"], "v149");
    assert_eq!(params["long"].len(), 6000, "truncated to MLflow's limit");
    let tags = kv_list(&r["run"]["data"]["tags"]);
    assert_eq!(tags["note"], "round trip");
    assert_eq!(tags["anvil.uid"], local.meta.uid);
    assert_eq!(tags["anvil.kind"], "train");
    assert_eq!(tags["anvil.recipe"], "recipes/quickstart.toml");
    assert!(tags["artifact_ref.checkpoint"].ends_with("ckpt"));
    assert_eq!(tags["command_line"], "anvil train run");
    if let Some(c) = local.tags.get("git.commit") {
        assert_eq!(&tags["mlflow.source.git.commit"], c);
    }

    // Every step of every metric, with its value.
    let loss = history(&uri, &run_id, "train/loss");
    assert_eq!(loss.len(), 700);
    for (step, v) in &loss {
        // The server prints doubles with 16 significant digits: equal to the last bit or two.
        let (got, want) = (v.as_f64().unwrap(), 5.0 / (step + 1) as f64);
        assert!(
            (got - want).abs() <= 1e-15 * want,
            "step {step}: {got} vs {want}"
        );
    }
    assert_eq!(history(&uri, &run_id, "train/lr").len(), 700);
    let val: Vec<u64> = history(&uri, &run_id, "val/loss").into_keys().collect();
    assert_eq!(val, (0..7).map(|i| i * 100 + 99).collect::<Vec<_>>());
    // `@` is not allowed in MLflow names: eval/pass@1 is eval/pass_at_1 there.
    assert_eq!(
        history(&uri, &run_id, "eval/pass_at_1")[&700].as_f64(),
        Some(0.25)
    );
    assert_eq!(history(&uri, &run_id, "train/grad_norm")[&700], "NaN");

    let root = get(&uri, "mlflow/artifacts/list", &[("run_id", &run_id)]);
    let mut files: Vec<String> = root["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(files, vec!["eval", "recipe file.toml"]);
    let sub = get(
        &uri,
        "mlflow/artifacts/list",
        &[("run_id", &run_id), ("path", "eval")],
    );
    assert_eq!(sub["files"][0]["path"], "eval/summary.json");
    assert_eq!(sub["files"][0]["file_size"], 16);

    // Nothing left to send: a sync sends nothing and makes no second run.
    let rep = sync_run(&dir, None).unwrap();
    assert_eq!(
        (rep.metrics_sent, rep.run_id.as_str()),
        (0, run_id.as_str())
    );
}

#[test]
fn metrics_logged_while_the_server_is_down_arrive_after_it_returns() {
    let Some(exe) = require_mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&exe, &tmp.path().join("server"));
    let uri = server.uri();
    let dir = tmp.path().join("runs/long");
    let run = Run::create(&dir, info("long", target(&uri, "anvil-down"))).unwrap();
    run.log_param("train.steps", 400).unwrap();
    for step in 0..100u64 {
        run.log_metric(step, "train/loss", step as f64).unwrap();
    }
    let t0 = Instant::now();
    while synced_lines(&dir) < 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "first 100 never synced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    server.kill();
    for step in 100..300u64 {
        run.log_metric(step, "train/loss", step as f64).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    run.log_artifact_bytes("notes.txt", b"logged while the server was down")
        .unwrap();

    // A second run that starts and ends while the server is down: nothing reaches MLflow, the
    // folder says so, and `runs sync` sends it later.
    let offline = tmp.path().join("runs/offline");
    let mut t = target(&uri, "anvil-down");
    t.drain_timeout = Duration::from_millis(500);
    let off = Run::create(&offline, info("offline", t)).unwrap();
    for step in 0..50u64 {
        off.log_metric(step, "train/loss", 1.0).unwrap();
    }
    off.finish(Status::Finished).unwrap();
    let st = RunFolder::open(&offline).unwrap().mlflow.unwrap();
    assert_eq!((st.run_id.as_deref(), st.metrics_synced), (None, 0));
    assert!(st.last_error.is_some());
    assert!(sync_run(&offline, None).is_err(), "server still down");

    server.restart();
    for step in 300..400u64 {
        run.log_metric(step, "train/loss", step as f64).unwrap();
    }
    run.finish(Status::Finished).unwrap();

    let state = RunFolder::open(&dir).unwrap().mlflow.unwrap();
    assert_eq!(state.metrics_synced, 400, "{state:?}");
    let run_id = state.run_id.unwrap();
    let loss = history(&uri, &run_id, "train/loss");
    assert_eq!(
        loss.keys().copied().collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    let r = get(&uri, "mlflow/runs/get", &[("run_id", &run_id)]);
    assert_eq!(r["run"]["info"]["status"], "FINISHED");
    let arts = get(&uri, "mlflow/artifacts/list", &[("run_id", &run_id)]);
    assert_eq!(arts["files"][0]["path"], "notes.txt");

    let rep = sync_run(&offline, None).unwrap();
    assert_eq!((rep.metrics_sent, rep.metrics_total), (50, 50));
    let r = get(&uri, "mlflow/runs/get", &[("run_id", &rep.run_id)]);
    assert_eq!(r["run"]["info"]["status"], "FINISHED");
    assert_eq!(r["run"]["info"]["run_name"], "offline");
    assert_eq!(history(&uri, &rep.run_id, "train/loss").len(), 50);
}
