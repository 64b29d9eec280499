//! `anvil runs list | show | compare | plot | sync` on fixture run folders, and
//! `anvil eval pass-at-k --run-dir` recording an eval run.

mod common;
use anvil_tracking::{Run, RunInfo, RunKind, Status, params};
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

/// `anvil` with no MLflow server configured from the environment.
fn anvil_local(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .output()
        .expect("run anvil")
}

fn train_run(root: &Path, name: &str, lr: f64, steps: u64) {
    let run = Run::create(
        &root.join(name),
        RunInfo {
            name: name.into(),
            kind: RunKind::Train,
            command_line: vec!["anvil".into(), "train".into(), "run".into()],
            recipe: Some("recipes/quickstart.toml".into()),
            mlflow: None,
        },
    )
    .unwrap();
    run.log_params(params::flatten(&json!({
        "train": {"lr": lr, "steps": steps},
        "data": {"tokenize": {"seq_len": 256}},
    })))
    .unwrap();
    for s in 0..steps {
        let loss = 5.0 * (-(s as f64) * lr * 30.0).exp() + 1.0;
        run.log_metric(s, "train/loss", loss).unwrap();
        if s % 20 == 19 {
            run.log_metric(s, "val/loss", loss + 0.25).unwrap();
        }
    }
    run.log_artifact_bytes("recipe.toml", b"[train]\n").unwrap();
    run.finish(Status::Finished).unwrap();
}

fn fixtures(root: &Path) {
    train_run(root, "base", 0.001, 100);
    train_run(root, "hot", 0.003, 120);
    let ev = Run::create(
        &root.join("he-base"),
        RunInfo {
            name: String::new(),
            kind: RunKind::Eval,
            command_line: vec![],
            recipe: None,
            mlflow: None,
        },
    )
    .unwrap();
    ev.log_metrics(0, &[("eval/pass@1", 0.125), ("eval/n_samples", 164.0)])
        .unwrap();
    ev.finish(Status::Finished).unwrap();
    // A run whose process died without a word: run.json still says RUNNING.
    let dead = root.join("dead");
    {
        let run = Run::create(
            &dead,
            RunInfo {
                name: "dead".into(),
                kind: RunKind::Train,
                command_line: vec![],
                recipe: Some("recipes/quickstart.toml".into()),
                mlflow: None,
            },
        )
        .unwrap();
        run.log_metric(7, "train/loss", 3.0).unwrap();
        std::mem::forget(run); // no Drop: nothing marks it finished, as after SIGKILL
    }
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(dead.join("run.json")).unwrap()).unwrap();
    // Our own pid with another start time: a recycled pid, so the writer is gone.
    meta["attempts"][0]["proc_start"] = json!(1);
    std::fs::write(dead.join("run.json"), meta.to_string()).unwrap();
}

#[test]
fn runs_list_show_compare_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    fixtures(&root);
    let r = root.to_str().unwrap();

    // A folder whose run.json is not readable is skipped with a warning, not fatal.
    std::fs::create_dir_all(root.join("broken")).unwrap();
    std::fs::write(root.join("broken/run.json"), "{").unwrap();
    let o = ok(anvil_local(&["runs", "list", "--root", r]));
    assert!(stderr(&o).contains("warning: skipped") && stderr(&o).contains("broken"));
    let list = stdout(&o);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 5, "{list}");
    assert!(lines[0].starts_with("run ") && lines[0].contains("best val/loss"));
    let row = |name: &str| {
        *lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
    };
    let base: Vec<&str> = row("base").split_whitespace().collect();
    assert_eq!(
        &base[1..5],
        &["train", "quickstart", "FINISHED", "99"],
        "{list}"
    );
    assert!(row("he-base").contains("0.1250"), "{list}");
    assert!(row("dead").contains("KILLED"), "{list}");

    let show = stdout(&ok(anvil_local(&["runs", "show", "hot", "--root", r])));
    for want in [
        "status    FINISHED",
        "train.lr",
        "0.003",
        "train/loss",
        "val/loss",
        "recipe.toml",
        "command_line",
    ] {
        assert!(show.contains(want), "missing {want:?}:\n{show}");
    }
    // By path as well as by name.
    let by_path = root.join("dead");
    let show = stdout(&ok(anvil_local(&[
        "runs",
        "show",
        by_path.to_str().unwrap(),
    ])));
    assert!(show.contains("KILLED (run.json says RUNNING"), "{show}");

    let cmp = stdout(&ok(anvil_local(&[
        "runs", "compare", "base", "hot", "--root", r,
    ])));
    assert!(
        cmp.contains("params that differ (2 differ, 1 equal)"),
        "{cmp}"
    );
    let lr = cmp.lines().find(|l| l.contains("train.lr")).unwrap();
    assert!(lr.contains("0.001") && lr.contains("0.003"), "{cmp}");
    let steps = cmp.lines().find(|l| l.starts_with("steps")).unwrap();
    assert_eq!(
        steps.split_whitespace().collect::<Vec<_>>(),
        ["steps", "99", "119"]
    );
    assert!(cmp.contains("val/loss (best)"), "{cmp}");

    // Shown with --nocapture, to read the output as a person would.
    println!("{list}\n{show}\n{cmp}");

    // The output's folder must exist (a typo'd --out creates nothing).
    let png = tmp.path().join("out/loss.png");
    let line = one_line_error(&anvil_local(&[
        "runs",
        "plot",
        "base",
        "--root",
        r,
        "--out",
        png.to_str().unwrap(),
    ]));
    assert!(line.contains("no such folder"), "{line}");
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let out = stdout(&ok(anvil_local(&[
        "runs",
        "plot",
        "base",
        "hot",
        "--root",
        r,
        "--out",
        png.to_str().unwrap(),
    ])));
    assert!(out.contains("wrote"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000 && bytes.len() < 5_000_000,
        "{}",
        bytes.len()
    );

    // Errors: one line each, naming what is wrong.
    let e = one_line_error(&anvil_local(&[
        "runs", "plot", "base", "--metric", "nope", "--root", r, "--out", "x.png",
    ]));
    assert!(e.contains("nope") && e.contains("train/loss"), "{e}");
    let e = one_line_error(&anvil_local(&["runs", "show", "missing", "--root", r]));
    assert!(e.contains("no run `missing`") && e.contains("base"), "{e}");
    let e = one_line_error(&anvil_local(&[
        "runs",
        "list",
        "--root",
        "/nonexistent/runs",
    ]));
    assert!(e.contains("/nonexistent/runs"), "{e}");
    let e = one_line_error(&anvil_local(&["runs", "sync", "base", "--root", r]));
    assert!(e.contains("never sent to MLflow"), "{e}");
    let e = one_line_error(&anvil_local(&[
        "runs",
        "sync",
        "base",
        "--root",
        r,
        "--uri",
        "file:./mlruns",
    ]));
    assert!(e.contains("not an http"), "{e}");
}

#[test]
fn eval_run_dir_records_an_eval_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (problems, samples) = synth_problems_and_samples(dir, 2, 4, 5);
    let run_dir = dir.join("runs/synth-eval");
    let args = [
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1,2",
        "--workers",
        "2",
        "--run-dir",
        run_dir.to_str().unwrap(),
        "-q",
    ];
    let out = stdout(&ok(anvil_local(&args)));
    assert!(
        out.contains("pass@1 0.5000") && out.contains("recorded run"),
        "{out}"
    );

    let meta: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        (&meta["kind"], &meta["status"], &meta["name"]),
        (&json!("eval"), &json!("FINISHED"), &json!("synth-eval"))
    );
    let p: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("params.json")).unwrap()).unwrap();
    assert_eq!(p["eval.k"], "1,2");
    assert_eq!(p["eval.workers"], "2");
    assert_eq!(p["eval.timeout"], "3");
    let metrics: Vec<Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |k: &str| {
        metrics
            .iter()
            .find(|m| m["key"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(
        (&get("eval/pass@1")["value"], &get("eval/pass@1")["step"]),
        (&json!(0.5), &json!(0))
    );
    assert_eq!(get("eval/pass@2")["value"], 1.0);
    assert_eq!(get("eval/verdicts/passed")["value"], 4.0);
    assert_eq!(get("eval/n_samples")["value"], 8.0);
    assert_eq!(
        std::fs::read(run_dir.join("artifacts/summary.json")).unwrap(),
        std::fs::read(dir.join("samples.jsonl_summary.json")).unwrap()
    );
    let tags: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("tags.json")).unwrap()).unwrap();
    assert!(
        tags["artifact_ref.results"]
            .as_str()
            .unwrap()
            .ends_with("samples.jsonl_results.jsonl")
    );

    let list = stdout(&ok(anvil_local(&[
        "runs",
        "list",
        "--root",
        dir.join("runs").to_str().unwrap(),
    ])));
    assert!(
        list.contains("synth-eval") && list.contains("0.5000"),
        "{list}"
    );

    // The folder now holds a run: a second eval into it is refused before anything runs.
    let e = one_line_error(&anvil_local(&args));
    assert!(e.contains("already holds a run"), "{e}");
}
