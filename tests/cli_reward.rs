//! `anvil reward score`, `anvil eval pass-at-k --reward` and `anvil reward analyze` end to end:
//! every component of the composite reward on hand-written samples whose value is known, and
//! one-line errors for bad input.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const PROMPT: &str = "def inc(x):\n    \"\"\"Return x + 1.\"\"\"\n";
/// Four asserts that convert into cases.
const TEST: &str = "\n\ndef check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n    assert candidate(3) == 4\n    assert candidate(4) == 5\n";
/// A loop: does not convert, runs as a whole.
const LOOP_TEST: &str =
    "\n\ndef check(candidate):\n    for i in range(3):\n        assert candidate(i) == i + 1\n";

fn problems(dir: &Path) -> PathBuf {
    let p = dir.join("problems.jsonl");
    let rows = [
        json!({"task_id": "R/cases", "prompt": PROMPT, "entry_point": "inc",
            "canonical_solution": "    return x + 1\n", "test": TEST}),
        json!({"task_id": "R/loop", "prompt": PROMPT, "entry_point": "inc",
            "canonical_solution": "    return x + 1\n", "test": LOOP_TEST}),
    ];
    let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// (name, task, completion)
fn cases() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("all", "R/cases", "    return x + 1\n"),
        // Right on even inputs only: 2 of 4 cases.
        ("half", "R/cases", "    return x + 1 if x % 2 == 0 else 0\n"),
        // Passes every case, but reads code from stdin on a path the tests never take.
        (
            "insecure",
            "R/cases",
            "    if x < 0:\n        return eval(input())\n    return x + 1\n",
        ),
        ("broken", "R/cases", "    return (x +\n"),
        (
            "gpl",
            "R/cases",
            "    # SPDX-License-Identifier: GPL-3.0-only\n    return x + 1\n",
        ),
        ("loop pass", "R/loop", "    return x + 1\n"),
        ("loop fail", "R/loop", "    return x\n"),
    ]
}

fn write_samples(dir: &Path) -> PathBuf {
    let p = dir.join("samples.jsonl");
    let rows: Vec<String> = cases()
        .iter()
        .map(|(name, task, c)| json!({"task_id": task, "completion": c, "name": name}).to_string())
        .collect();
    std::fs::write(&p, rows.join("\n") + "\n").unwrap();
    p
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn score(problems: &Path, samples: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "reward",
        "score",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--workers",
        "2",
        "-q",
    ];
    args.extend_from_slice(extra);
    anvil(&args)
}

const W: [(&str, f64); 4] = [
    ("test_pass_rate", 0.6),
    ("security", 0.15),
    ("quality", 0.15),
    ("license", 0.1),
];

#[test]
fn reward_score_writes_every_component() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = write_samples(dir);
    let o = ok(score(&problems, &samples, &[]));
    let out = stdout(&o);
    assert!(out.contains("reward "), "{out}");
    assert!(out.contains("median"), "{out}");
    assert!(out.contains("histogram"), "{out}");

    let rows = read_jsonl(&dir.join("samples.jsonl_rewards.jsonl"));
    assert_eq!(rows.len(), cases().len());
    // Written through a temp file and renamed: nothing else is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

    let by_name = |name: &str| -> &Value {
        let i = cases().iter().position(|s| s.0 == name).unwrap();
        &rows[i]
    };
    let c = |name: &str, term: &str| by_name(name)["components"][term].as_f64().unwrap();
    for (i, r) in rows.iter().enumerate() {
        let (_, task, _) = cases()[i];
        assert_eq!(r["task_id"], task);
        assert_eq!(r["line"], i + 1);
        let total: f64 = W
            .iter()
            .map(|(t, w)| w * r["components"][t].as_f64().unwrap())
            .sum();
        assert!((r["total"].as_f64().unwrap() - total).abs() < 1e-9, "{r}");
        for (t, _) in W {
            let v = r["components"][t].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{t} = {v} in {r}");
        }
    }
    assert_eq!(by_name("half")["completion_index"], 1);
    assert_eq!(by_name("loop fail")["completion_index"], 1);

    // Test pass rate: the share of cases, partial where the check converted.
    assert_eq!(c("all", "test_pass_rate"), 1.0);
    assert_eq!(c("half", "test_pass_rate"), 0.5);
    let half = &by_name("half")["details"]["test_pass_rate"];
    assert_eq!(
        (half["cases_passed"].as_u64(), half["cases_total"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(half["partial"], true);
    assert_eq!(half["passed"], false);
    assert_eq!(c("insecure", "test_pass_rate"), 1.0);
    assert_eq!(c("broken", "test_pass_rate"), 0.0);
    assert_eq!(c("gpl", "test_pass_rate"), 1.0);
    assert_eq!(c("loop pass", "test_pass_rate"), 1.0);
    assert_eq!(c("loop fail", "test_pass_rate"), 0.0);
    assert_eq!(
        by_name("loop pass")["details"]["test_pass_rate"]["partial"],
        false
    );

    // Security: eval() is B307 (MEDIUM/HIGH): risk 0.4, so the term is 0.6.
    assert_eq!(c("all", "security"), 1.0);
    assert!((c("insecure", "security") - 0.6).abs() < 1e-9);
    let findings = by_name("insecure")["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["term"] == "security" && f["rule"] == "B307" && f["line"] == 4),
        "{findings:?}"
    );
    // Quality: 0 for code that does not parse, something good for a one-liner.
    assert_eq!(c("broken", "quality"), 0.0);
    assert_eq!(by_name("broken")["details"]["quality"]["parses"], false);
    assert!(c("all", "quality") > 0.8, "{}", c("all", "quality"));
    // License: a GPL tag is refused by the default (permissive) policy.
    assert_eq!(c("gpl", "license"), 0.0);
    assert_eq!(c("all", "license"), 1.0);
    assert!(
        by_name("gpl")["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["term"] == "license" && f["rule"] == "L001"),
        "{}",
        by_name("gpl")
    );

    // Other weights, and a policy that allows GPL.
    ok(score(
        &problems,
        &samples,
        &[
            "--weights",
            "1,0,0,0",
            "--license-allow",
            "MIT,GPL-3.0-only",
        ],
    ));
    let rows = read_jsonl(&dir.join("samples.jsonl_rewards.jsonl"));
    for r in &rows {
        assert_eq!(r["total"], r["components"]["test_pass_rate"], "{r}");
    }
    assert_eq!(rows[4]["components"]["license"], 1.0);
}

#[test]
fn pass_at_k_with_reward_adds_the_components() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = write_samples(dir);
    let o = ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1",
        "--reward",
        "-q",
    ]));
    let out = stdout(&o);
    assert!(out.contains("pass@1"), "{out}");
    assert!(out.contains("reward "), "{out}");
    let rewards = read_jsonl(&dir.join("samples.jsonl_rewards.jsonl"));
    assert_eq!(rewards.len(), cases().len());
    assert_eq!(rewards[1]["components"]["test_pass_rate"], 0.5);
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("samples.jsonl_summary.json")).unwrap(),
    )
    .unwrap();
    let mean: f64 = rewards
        .iter()
        .map(|r| r["total"].as_f64().unwrap())
        .sum::<f64>()
        / rewards.len() as f64;
    assert!((summary["reward"]["total_mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    for (t, _) in W {
        assert!(summary["reward"]["means"][t].is_number(), "{summary}");
    }
    // Mean share of cases passed: (1 + 0.5 + 1 + 0 + 1 + 1 + 0) / 7.
    let rate = summary["mean_pass_rate"].as_f64().unwrap();
    assert!((rate - 4.5 / 7.0).abs() < 1e-9, "{rate}");
    // pass@k's own numbers are those of all-or-nothing verdicts: 4 of 7 samples pass.
    let results = read_jsonl(&dir.join("samples.jsonl_results.jsonl"));
    let passed = results.iter().filter(|r| r["passed"] == true).count();
    assert_eq!(passed, 4);
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let samples = write_samples(dir);
    for (flags, says) in [
        (
            &["--weights", "0.6,0.4"][..],
            &["--weights", "expected 4"][..],
        ),
        (
            &["--weights", "0.6,x,0.2,0.2"],
            &["--weights", "`x` is not a number"],
        ),
        (&["--weights", "0,0,0,0"], &["--weights", "sum to 0"]),
        (&["--weights", "1,-1,0,1"], &["--weights", "at least 0"]),
        (
            &["--license-allow", "MIT,NotALicense-9"],
            &["--license-allow", "NotALicense-9"],
        ),
        (
            &["--corpus-index", "/nonexistent/minhash.idx"],
            &["--corpus-index", "/nonexistent/minhash.idx"],
        ),
        (&["--timeout", "0"], &["--timeout"]),
    ] {
        let line = one_line_error(&score(&problems, &samples, flags));
        for s in says {
            assert!(line.contains(s), "{flags:?}: `{line}` should mention `{s}`");
        }
    }
    // A malformed samples line names the file and line.
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"task_id\": \"R/cases\", \"completion\": \n",
            json!({"task_id": "R/cases", "completion": "    return x + 1\n"})
        ),
    )
    .unwrap();
    let line = one_line_error(&score(&problems, &bad, &[]));
    assert!(
        line.contains(&format!("{}:2: invalid JSON", bad.display())),
        "{line}"
    );
    // A task the problems do not have.
    let unknown = dir.join("unknown.jsonl");
    std::fs::write(
        &unknown,
        json!({"task_id": "R/none", "completion": "    return 1\n"}).to_string() + "\n",
    )
    .unwrap();
    let line = one_line_error(&score(&problems, &unknown, &[]));
    assert!(line.contains("line 1") && line.contains("R/none"), "{line}");
    assert!(!dir.join("unknown.jsonl_rewards.jsonl").exists());
    // Reward settings without --reward.
    let line = one_line_error(&anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--weights",
        "1,0,0,0",
    ]));
    assert!(line.contains("--reward"), "{line}");
}

#[test]
fn reward_analyze_reports_files_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("app.py");
    std::fs::write(
        &file,
        "import subprocess\n\n\ndef run(cmd):\n    return eval(cmd)\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // Findings are no failure.
    let text = stdout(&ok(anvil(&["reward", "analyze", f])));
    assert!(text.contains("B307"), "{text}");
    let json: Value = serde_json::from_str(&stdout(&ok(anvil(&[
        "reward", "analyze", f, "--format", "json",
    ]))))
    .unwrap();
    assert_eq!(json["files"].as_array().unwrap().len(), 1, "{json}");
    let sarif: Value = serde_json::from_str(&stdout(&ok(anvil(&[
        "reward", "analyze", f, "--format", "sarif",
    ]))))
    .unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let missing = dir.join("missing.py");
    let line = one_line_error(&anvil(&["reward", "analyze", missing.to_str().unwrap()]));
    assert!(line.contains("missing.py"), "{line}");
    let line = one_line_error(&anvil(&[
        "reward",
        "analyze",
        f,
        "--license-allow",
        "Nope-1",
    ]));
    assert!(line.contains("Nope-1"), "{line}");
}
