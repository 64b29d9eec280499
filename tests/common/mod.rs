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
