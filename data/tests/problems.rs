//! `problems`: the embedded HumanEval, JSONL error reporting, and that HumanEval's canonical
//! solutions pass under python3 (the first sanity check of any harness).

mod common;
use common::run_python;

use anvil_data::problems::{self, Problem};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

#[test]
fn humaneval_is_embedded() {
    let he = problems::humaneval();
    assert_eq!(he.len(), 164);
    let ids: HashSet<_> = he.iter().map(|p| &p.task_id).collect();
    assert_eq!(ids.len(), 164);
    assert_eq!(he[0].task_id, "HumanEval/0");
    assert_eq!(he[0].entry_point, "has_close_elements");
    assert!(
        he.iter()
            .all(|p| !p.canonical_solution.is_empty() && p.test.contains("def check("))
    );
    assert_eq!(problems::load("humaneval").unwrap(), he);
}

#[test]
fn humaneval_canonical_solutions_pass() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<_> = problems::humaneval().to_vec();
    let common::PyResult { ran, failed, .. } = run_python(
        dir.path(),
        "canonical",
        &jobs,
        |p| p.canonical_solution.clone(),
        false,
    );
    println!(
        "python3 ran {ran} HumanEval programs, {} failed",
        failed.len()
    );
    assert_eq!(ran, 164);
    assert!(failed.is_empty(), "canonical solutions failed: {failed:?}");

    // And a wrong completion fails, so the check is not vacuous.
    let wrong: Vec<_> = problems::humaneval().into_iter().take(5).collect();
    let failed = run_python(
        dir.path(),
        "wrong",
        &wrong,
        |_| "    return None\n".to_string(),
        false,
    )
    .failed;
    assert_eq!(failed.len(), 5, "`return None` should fail every check");
}

#[test]
fn program_matches_human_eval() {
    let p = &problems::humaneval()[0];
    let prog = problems::program(p, "    pass\n");
    assert_eq!(
        prog,
        format!(
            "{}    pass\n\n{}\ncheck(has_close_elements)",
            p.prompt, p.test
        )
    );
}

fn sample() -> Vec<Problem> {
    problems::humaneval().into_iter().take(3).collect()
}

#[test]
fn plain_and_gz_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let want = sample();
    for name in ["p.jsonl", "p.jsonl.gz"] {
        let path = dir.path().join(name);
        problems::write_jsonl(&path, &want).unwrap();
        assert_eq!(problems::read_jsonl(&path).unwrap(), want, "{name}");
    }
    // gzip is recognised by its magic bytes even without the extension.
    std::fs::copy(
        dir.path().join("p.jsonl.gz"),
        dir.path().join("misnamed.jsonl"),
    )
    .unwrap();
    assert_eq!(
        problems::read_jsonl(&dir.path().join("misnamed.jsonl")).unwrap(),
        want
    );
    // Field order on disk is the documented one.
    let text = std::fs::read_to_string(dir.path().join("p.jsonl")).unwrap();
    assert!(text.starts_with("{\"task_id\":\"HumanEval/0\",\"prompt\":"));
    let first = text.lines().next().unwrap();
    let order: Vec<usize> = [
        "task_id",
        "prompt",
        "entry_point",
        "canonical_solution",
        "test",
    ]
    .iter()
    .map(|k| first.find(&format!("\"{k}\":")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn tolerant_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"{{"task_id":"a","prompt":"def f():\n","entry_point":"f","test":"","extra":1}}"#
    )
    .unwrap();
    writeln!(f).unwrap();
    writeln!(f, "   ").unwrap();
    writeln!(f, r#"{{"task_id":"b","prompt":"def g():\n","entry_point":"g","test":"","canonical_solution":"x"}}"#)
        .unwrap();
    drop(f);
    let ps = problems::read_jsonl(&path).unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].canonical_solution, "");
    assert_eq!(ps[1].canonical_solution, "x");
}

/// Write `lines` to a file named `name` and return the error's Display.
fn error_of(dir: &Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    problems::read_jsonl(&path)
        .expect_err("malformed input must be rejected")
        .to_string()
}

#[test]
fn malformed_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"task_id":"t1","prompt":"p","entry_point":"f","test":"t"}"#;
    let cases: &[(&str, &str, &str)] = &[
        ("notjson.jsonl", "{not json", "invalid JSON"),
        ("array.jsonl", "[1, 2, 3]", "expected a JSON object"),
        (
            "missing.jsonl",
            r#"{"task_id":"t2","prompt":"p","test":"t"}"#,
            "missing field `entry_point`",
        ),
        (
            "wrongtype.jsonl",
            r#"{"task_id":"t2","prompt":1,"entry_point":"f","test":"t"}"#,
            "invalid type",
        ),
        ("dup.jsonl", good, "duplicate task_id `t1`"),
    ];
    for (name, bad, msg) in cases {
        let err = error_of(dir.path(), name, &[good, "", bad]);
        assert!(err.contains(name), "{err}");
        assert!(err.contains(":3:"), "line number missing: {err}");
        assert!(err.contains(msg), "{err}");
    }
    let err = error_of(dir.path(), "empty.jsonl", &["", "  "]);
    assert!(
        err.contains("empty.jsonl") && err.contains("no problems"),
        "{err}"
    );
    let err = problems::load(dir.path().join("absent.jsonl").to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.jsonl"), "{err}");
}
