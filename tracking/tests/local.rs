//! The local run folder: what each file holds, resume, a killed writer, plots.

use anvil_tracking::folder::{self, Metric};
use anvil_tracking::plot::{PlotOptions, plot_runs};
use anvil_tracking::{Run, RunFolder, RunInfo, RunKind, Status, TrackingError, params};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn info(name: &str) -> RunInfo {
    RunInfo {
        name: name.into(),
        kind: RunKind::Train,
        command_line: vec![
            "anvil".into(),
            "train".into(),
            "run".into(),
            "my recipe.toml".into(),
        ],
        recipe: Some("recipes/quickstart.toml".into()),
        mlflow: None,
    }
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn metric_lines(dir: &Path) -> Vec<Metric> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| Metric::parse(l).unwrap_or_else(|| panic!("bad line {l:?}")))
        .collect()
}

#[test]
fn run_folder_holds_params_metrics_tags_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("quick-1");
    let run = Run::create(&dir, info("quick-1")).unwrap();
    let recipe =
        json!({"data": {"tokenize": {"seq_len": 256, "ast": true}}, "train": {"lr": 3e-4}});
    run.log_params(params::flatten(&recipe)).unwrap();
    run.log_param("train.steps", 100).unwrap();
    // Same value again: fine. Another value: a one-line error naming the key.
    run.log_param("train.steps", 100).unwrap();
    let e = run.log_param("train.steps", 200).unwrap_err();
    assert!(matches!(e, TrackingError::ParamChanged { .. }));
    assert!(e.to_string().contains("`train.steps`"), "{e}");
    for step in 0..5u64 {
        run.log_metrics(
            step,
            &[("train/loss", 3.0 - step as f64 * 0.5), ("train/lr", 1e-3)],
        )
        .unwrap();
    }
    run.log_metric(4, "val/loss", f64::NAN).unwrap();
    run.set_tag("note", "first try").unwrap();
    let src = tmp.path().join("quickstart.toml");
    std::fs::write(&src, "[train]\nlr = 3e-4\n").unwrap();
    run.log_artifact(&src).unwrap();
    run.log_artifact_bytes("eval/summary.json", b"{}").unwrap();
    run.log_artifact_ref("checkpoint", &tmp.path().join("ckpt/step-5"))
        .unwrap();
    assert!(run.log_artifact_bytes("../escape", b"x").is_err());
    assert!(run.log_metric(0, "", 1.0).is_err());
    run.finish(Status::Finished).unwrap();

    let meta = read(&dir.join("run.json"));
    assert_eq!(meta["name"], "quick-1");
    assert_eq!(meta["kind"], "train");
    assert_eq!(meta["status"], "FINISHED");
    assert_eq!(meta["recipe"], "recipes/quickstart.toml");
    assert!(meta["end_time"].as_u64().unwrap() >= meta["start_time"].as_u64().unwrap());
    assert_eq!(meta["attempts"][0]["pid"], std::process::id());

    let p = read(&dir.join("params.json"));
    assert_eq!(p["data.tokenize.seq_len"], "256");
    assert_eq!(p["data.tokenize.ast"], "true");
    assert_eq!(p["train.lr"], "0.0003");
    assert_eq!(p["train.steps"], "100");

    let m = metric_lines(&dir);
    assert_eq!(m.len(), 11);
    assert_eq!(
        (m[0].step, m[0].key.as_str(), m[0].value),
        (0, "train/loss", 3.0)
    );
    assert!(m[10].value.is_nan() && m[10].key == "val/loss");
    assert!(m.iter().all(|x| x.timestamp > 1_600_000_000_000));
    let raw = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(raw.ends_with("\"value\":\"NaN\"}\n") || raw.contains("\"value\":\"NaN\""));

    let t = read(&dir.join("tags.json"));
    assert_eq!(t["note"], "first try");
    assert_eq!(t["command_line"], "anvil train run 'my recipe.toml'");
    assert!(t["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(
        t["artifact_ref.checkpoint"]
            .as_str()
            .unwrap()
            .ends_with("ckpt/step-5")
    );
    // The test runs inside the project's git checkout: the commit is recorded.
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok()
    {
        assert_eq!(t["git.commit"].as_str().map(|c| c.len()), Some(40), "{t}");
    }

    let f = RunFolder::open(&dir).unwrap();
    assert_eq!(
        f.artifacts().unwrap(),
        vec![
            ("eval/summary.json".to_string(), 2),
            ("quickstart.toml".to_string(), 18)
        ]
    );
    assert_eq!(f.meta.effective_status(), Status::Finished);
    assert!(!dir.join("mlflow.json").exists());

    // A second run in the same folder is refused.
    let e = Run::create(&dir, info("again")).err().unwrap().to_string();
    assert!(e.contains("already holds a run"), "{e}");
}

#[test]
fn resume_appends_and_dropped_run_is_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    {
        let run = Run::create(&dir, info("")).unwrap();
        run.log_metric(1, "train/loss", 2.0).unwrap();
        // Dropped without finish: an early `?` or a panic in the trainer.
    }
    let meta = RunFolder::open(&dir).unwrap().meta;
    assert_eq!(meta.name, "r", "empty name defaults to the folder name");
    assert_eq!(meta.status, Status::Failed);

    // A torn last line, as a kill in the middle of a write would leave.
    let mut raw = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    raw.push_str("{\"step\":2,\"ke");
    std::fs::write(dir.join("metrics.jsonl"), raw).unwrap();

    let run = Run::resume(&dir, None).unwrap();
    run.log_metric(2, "train/loss", 1.5).unwrap();
    run.finish(Status::Finished).unwrap();
    let f = RunFolder::open(&dir).unwrap();
    assert_eq!(f.meta.status, Status::Finished);
    assert_eq!(f.meta.attempts.len(), 2);
    let m = f.metrics().unwrap();
    assert_eq!(m.bad_lines, 1, "only the torn line is lost");
    assert_eq!(m.by_step("train/loss"), vec![(1, 2.0), (2, 1.5)]);
}

/// Not a test on its own: the child process of `killed_run_keeps_everything_logged`, which runs
/// this test binary again with ANVIL_TRACKING_CHILD set.
#[test]
fn child_that_logs_until_killed() {
    let Ok(dir) = std::env::var("ANVIL_TRACKING_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let run = Run::create(dir, info("victim")).unwrap();
    run.log_param("train.steps", 1_000_000).unwrap();
    for step in 0u64.. {
        run.log_metrics(
            step,
            &[
                ("train/loss", 1.0 / (step + 1) as f64),
                ("step", step as f64),
            ],
        )
        .unwrap();
        if step == 200 {
            std::fs::write(dir.join("ready"), b"").unwrap();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn killed_run_keeps_everything_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("victim");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_that_logs_until_killed", "--nocapture"])
        .env("ANVIL_TRACKING_CHILD", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !dir.join("ready").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "child never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no finish
    child.wait().unwrap();

    let f = RunFolder::open(&dir).unwrap();
    assert_eq!(f.meta.status, Status::Running, "run.json was never updated");
    assert_eq!(f.meta.effective_status(), Status::Killed);
    assert_eq!(f.params["train.steps"], "1000000");
    let m = f.metrics().unwrap();
    let steps = m.by_step("step");
    assert!(steps.len() > 200, "{} steps", steps.len());
    // Every step up to the kill is there, in order, none missing.
    for (i, (s, v)) in steps.iter().enumerate() {
        assert_eq!((*s, *v), (i as u64, i as f64));
    }
    assert!(m.bad_lines <= 1);
    let listed = folder::discover(tmp.path()).unwrap().runs;
    assert_eq!(listed.len(), 1);
    let table = anvil_tracking::report::list(&listed).unwrap();
    assert!(table.contains("KILLED"), "{table}");
}

#[test]
fn plot_writes_a_png() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (i, name) in ["baseline", "bigger-lr"].iter().enumerate() {
        let dir = tmp.path().join(name);
        let run = Run::create(&dir, info(name)).unwrap();
        for step in 0..300u64 {
            let noise = ((step * 7919 + i as u64 * 31) % 100) as f64 / 100.0 - 0.5;
            let loss = 6.0 * (-(step as f64) / (80.0 + 40.0 * i as f64)).exp() + 1.5 + 0.3 * noise;
            run.log_metric(step, "train/loss", loss).unwrap();
            if step % 50 == 49 {
                run.log_metric(step, "val/loss", loss + 0.2).unwrap();
            }
        }
        run.finish(Status::Finished).unwrap();
        dirs.push(dir);
    }
    // The library writes into an existing folder; the CLI refuses a missing one.
    std::fs::create_dir(tmp.path().join("plots")).unwrap();
    let out = tmp.path().join("plots/loss.png");
    let refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    plot_runs(&refs, &PlotOptions::default(), &out).unwrap();
    let png = std::fs::read(&out).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 20_000, "{} bytes", png.len());
    // Width and height from the IHDR chunk: 1200 wide, title + two panels high.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1200, 950));
    if let Ok(keep) = std::env::var("ANVIL_KEEP_PLOT") {
        std::fs::copy(&out, keep).unwrap();
    }

    let opts = PlotOptions {
        metrics: vec!["eval/pass@1".into()],
        ..PlotOptions::default()
    };
    let e = plot_runs(&refs, &opts, &out).unwrap_err().to_string();
    assert!(
        e.contains("no run has any of the metrics eval/pass@1; they have: train/loss, val/loss"),
        "{e}"
    );
}
