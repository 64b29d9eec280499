//! Helpers shared by the end-to-end tests: run the real `anvil` binary and look at what it did.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn anvil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args(args)
        .output()
        .expect("run anvil")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Success, or a panic that shows what the command printed.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "anvil failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// A failed run must say one clear line, never a panic or a backtrace.
pub fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic instead of an error: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

/// Run a Python snippet with the test environment's python3; returns stdout.
pub fn python(code: &str, args: &[&Path]) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Synthetic tasks from `anvil data synth` under `dir/synth`, and a samples file with two samples
/// per held-out task: its canonical solution (passes) and `return None` (fails).
/// Returns `(problems, samples)`.
pub fn synth_problems_and_samples(
    dir: &Path,
    n_train: usize,
    n_heldout: usize,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let synth = dir.join("synth");
    let (n_train, n_heldout, seed) = (n_train.to_string(), n_heldout.to_string(), seed.to_string());
    ok(anvil(&[
        "data",
        "synth",
        "--n-train",
        &n_train,
        "--n-heldout",
        &n_heldout,
        "--seed",
        &seed,
        "--out",
        synth.to_str().unwrap(),
    ]));
    let problems = synth.join("heldout.jsonl");
    let mut rows = Vec::new();
    for line in std::fs::read_to_string(&problems).unwrap().lines() {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        rows.push(
            serde_json::json!({"task_id": p["task_id"], "completion": p["canonical_solution"]})
                .to_string(),
        );
        rows.push(
            serde_json::json!({"task_id": p["task_id"], "completion": "    return None\n"})
                .to_string(),
        );
    }
    let samples = dir.join("samples.jsonl");
    std::fs::write(&samples, rows.join("\n") + "\n").unwrap();
    (problems, samples)
}

/// [`anvil`] with extra environment variables.
pub fn anvil_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run anvil")
}
