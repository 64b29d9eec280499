//! `anvil eval pass-at-k` at its edges: arguments out of range are refused up front with one
//! line, whatever a sample writes is capped before it reaches the results file, and a samples
//! file's bad bytes or Python-written lone surrogates are reported by line.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT: &str = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n";
const TEST: &str = "\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n";

fn problems(dir: &Path) -> PathBuf {
    let p = dir.join("problems.jsonl");
    let row = json!({"task_id": "T/0", "prompt": PROMPT, "entry_point": "add",
        "canonical_solution": "    return a + b\n", "test": TEST});
    std::fs::write(&p, format!("{row}\n")).unwrap();
    p
}

fn write_samples(dir: &Path, completions: &[String]) -> PathBuf {
    let p = dir.join("samples.jsonl");
    let rows: Vec<String> = completions
        .iter()
        .map(|c| json!({"task_id": "T/0", "completion": c}).to_string())
        .collect();
    std::fs::write(&p, rows.join("\n") + "\n").unwrap();
    p
}

fn pass_at_k(problems: &Path, samples: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1",
        "-q",
    ];
    args.extend_from_slice(extra);
    anvil(&args)
}

#[test]
fn out_of_range_arguments_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = write_samples(dir, &["    return a + b\n".into()]);
    for (flags, names) in [
        (&["--workers", "100000"][..], &["--workers", "at most"][..]),
        (&["--workers", "0"], &["--workers", "at least 1"]),
        (&["--memory-mb", "99999999999"], &["--memory-mb", "memory"]),
        (&["--memory-mb", "1"], &["--memory-mb", "at least"]),
        (&["--timeout", "1e300"], &["--timeout", "at most"]),
        (&["--timeout", "0"], &["--timeout"]),
        (&["--timeout", "nan"], &["--timeout"]),
    ] {
        let t0 = Instant::now();
        let o = pass_at_k(&problems, &samples, flags);
        let line = one_line_error(&o);
        for n in names {
            assert!(line.contains(n), "{flags:?}: `{line}` should mention `{n}`");
        }
        // Refused before any sandbox or thread starts.
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{flags:?} took {:?}",
            t0.elapsed()
        );
        assert!(!dir.join("samples.jsonl_results.jsonl").exists());
    }
}

#[test]
fn what_samples_write_is_capped_in_the_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let mut completions: Vec<String> = vec!["    raise Exception(\"Z\" * 15_000_000)\n".into(); 12];
    completions.extend([
        // A long exception class name, not only a long message.
        "    raise type(\"E\" * 3_000_000, (Exception,), {})()\n".to_string(),
        // Past the harness's own cap: a report forged on the result channel.
        "    return a + b\nimport os\nos.write(3, ('{\"error\": \"' + 'Y' * 5_000_000 + '\"}\\n').encode())\nos._exit(0)\n".into(),
        // A huge wrong answer ends up in the mismatch message.
        "    return 'W' * 5_000_000\n".into(),
        // A flood on stderr, then no report.
        "    return a + b\nimport os\nos.write(2, b'Q' * 3_000_000)\nos._exit(3)\n".into(),
        "    return a + b\n".into(),
    ]);
    let samples = write_samples(dir, &completions);
    ok(pass_at_k(&problems, &samples, &["--timeout", "10"]));
    let results = dir.join("samples.jsonl_results.jsonl");
    let size = std::fs::metadata(&results).unwrap().len();
    assert!(size < 200_000, "results file is {size} bytes");
    let rows: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), completions.len());
    for (i, r) in rows.iter().enumerate() {
        let result = r["result"].as_str().unwrap();
        assert!(result.len() <= 4200, "row {i}: {} bytes", result.len());
        if i + 1 < rows.len() {
            assert_eq!(r["passed"], false, "row {i}: {result}");
            assert!(result.contains("[truncated: "), "row {i}: {result}");
        } else {
            assert_eq!(result, "passed");
        }
    }
    let first = rows[0]["result"].as_str().unwrap();
    assert!(first.starts_with("failed: Exception: ZZZ"), "{first}");
    assert!(
        rows[13]["result"]
            .as_str()
            .unwrap()
            .starts_with("failed: YYY")
    );
    assert!(rows[14]["result"].as_str().unwrap().contains("got 'WWW"));
}

#[test]
fn invalid_utf8_in_samples_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = dir.join("samples.jsonl");
    let good = json!({"task_id": "T/0", "completion": "    return a + b\n"}).to_string() + "\n";
    let mut bytes = good.repeat(77_776).into_bytes();
    bytes.extend_from_slice(
        b"{\"task_id\": \"T/0\", \"completion\": \"    return a + b # \xff\xfe\"}\n",
    );
    bytes.extend_from_slice(good.as_bytes());
    std::fs::write(&samples, bytes).unwrap();
    let line = one_line_error(&pass_at_k(&problems, &samples, &[]));
    assert!(
        line.contains(&format!("{}:77777: invalid UTF-8", samples.display())),
        "{line}"
    );
}

#[test]
fn lone_surrogates_from_python_json_are_replaced_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = dir.join("samples.jsonl");
    // What Python's json.dumps writes for a string holding lone surrogates; an escaped backslash
    // before `ud800` is not an escape, and a proper pair is kept.
    std::fs::write(
        &samples,
        concat!(
            r#"{"task_id": "T/0", "completion": "    return a + b\n", "note": "\\ud800 \ud83d\ude00"}"#,
            "\n",
            r#"{"task_id": "T/0", "completion": "    return a + b  # \ud800\n", "note": "\udc00x"}"#,
            "\n",
            r#"{"task_id": "T/0", "completion": "    return a + b  # \udfff\n"}"#,
            "\n",
        ),
    )
    .unwrap();
    let o = ok(pass_at_k(&problems, &samples, &[]));
    let err = stderr(&o);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("surrogate")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].contains("3 lone surrogate")
            && warnings[0].contains("line 2"),
        "{}",
        warnings[0]
    );
    let rows: Vec<Value> = std::fs::read_to_string(dir.join("samples.jsonl_results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["note"], "\\ud800 \u{1f600}");
    assert_eq!(rows[1]["note"], "\u{fffd}x");
    assert!(rows.iter().all(|r| r["passed"] == true), "{rows:?}");
}
