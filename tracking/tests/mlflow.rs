//! Runs mirrored to a real `mlflow server` (PyPI mlflow, sqlite store, artifact proxy) on a
//! loopback port, read back through MLflow's REST API. Needs the `mlflow` executable on PATH
//! (scripts/test.sh installs it): without it these tests fail under CI and are skipped elsewhere.

#[path = "support/mlflow_server.rs"]
mod mlflow_server;

use anvil_tracking::{MlflowTarget, Run, RunFolder, RunInfo, RunKind, Status, sync_run};
use mlflow_server::{Server, get, history, kv_list, require_mlflow};
use std::path::Path;
use std::time::{Duration, Instant};

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
