//! `anvil data synth` output evaluated by `anvil eval pass-at-k`: every synthetic task is checked
//! outside the sample's process, canonical solutions pass and wrong ones fail.

mod common;
use common::*;
use serde_json::Value;

#[test]
fn synth_tasks_evaluate_out_of_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (problems, samples) = synth_problems_and_samples(dir, 10, 12, 3);
    let out = stdout(&ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1,2",
        "-q",
    ])));
    assert!(
        out.contains("pass@1 0.5000") && out.contains("pass@2 1.0000"),
        "{out}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("samples.jsonl_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["modes"]["out-of-process"], 12, "{summary}");
    assert!(summary["modes"].get("in-process").is_none());
    assert_eq!(summary["verdicts"]["passed"], 12);
    assert_eq!(summary["n_samples"], 24);
    for line in std::fs::read_to_string(dir.join("samples.jsonl_results.jsonl"))
        .unwrap()
        .lines()
    {
        let r: Value = serde_json::from_str(line).unwrap();
        let canonical = r["completion"] != "    return None\n";
        assert_eq!(r["passed"], canonical, "{r}");
        assert_eq!(r["check"], "out-of-process");
    }
}
