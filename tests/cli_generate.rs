//! `anvil generate` and `anvil eval pass-at-k --checkpoint` on scripted models (a bigram model
//! that answers a prompt with known text), so every output can be checked exactly.

mod common;

use anvil_infer::testing::{bigram_model, byte_tokenizer, scripted_model, token_id};
use common::{anvil, ok, one_line_error, stdout};
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `anvil generate --checkpoint CKPT ARGS…`.
fn generate(ckpt: &str, args: &[&str]) -> std::process::Output {
    let mut a = vec!["generate", "--checkpoint", ckpt];
    a.extend_from_slice(args);
    anvil(&a)
}

#[test]
fn generate_prints_the_completion_streams_it_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    scripted_model(dir.path(), "n", " x\n");
    let ckpt = p(dir.path());
    let o = ok(generate(ckpt, &["--prompt", "    return"]));
    assert_eq!(stdout(&o), " x\n\n");
    // A stop sequence given with an escape cuts the text before it.
    let o = ok(generate(
        ckpt,
        &["--prompt", "return", "--stop", "\\n", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["text"], " x");
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 3);
    // max tokens, and the timing report.
    let report = dir.path().join("report.json");
    let o = ok(generate(
        ckpt,
        &[
            "--prompt",
            "return",
            "--max-tokens",
            "2",
            "--json",
            "--report",
            p(&report),
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["text"].as_str(), v["finish_reason"].as_str()),
        (Some(" x"), Some("length"))
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["generated_tokens"], 2);
    assert_eq!(r["prompt_tokens"], 6);
    assert!(r["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn syntax_aware_beam_search_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_tokenizer(dir.path());
    let id = |s: &str| token_id(&tok, s);
    bigram_model(
        dir.path(),
        &tok,
        &[
            (id("x"), vec![(id(")"), 0.6), (id("\n"), 0.4)]),
            (id(")"), vec![(id("\n"), 1.0)]),
            (id("\n"), vec![(0, 1.0)]),
        ],
    );
    let ckpt = p(dir.path());
    let prompt = "def f(x):\n    return x";
    let plain = ok(generate(ckpt, &["--prompt", prompt, "--beam", "3"]));
    assert_eq!(stdout(&plain), ")\n\n");
    let aware = ok(generate(
        ckpt,
        &["--prompt", prompt, "--beam", "3", "--syntax", "python"],
    ));
    assert_eq!(stdout(&aware), "\n\n");
}

#[test]
fn generate_rejects_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = one_line_error(&generate(p(&missing), &["--prompt", "x"]));
    assert!(e.contains("nope") && e.contains("no such folder"), "{e}");
    scripted_model(dir.path(), "n", " x\n");
    let ckpt = p(dir.path());
    for (args, want) in [
        (vec!["--temperature=-1"], "temperature"),
        (vec!["--top-p", "0"], "top_p"),
        (vec!["-n", "0"], "`n`"),
        (vec!["--beam", "0"], "beams"),
    ] {
        let e = one_line_error(&generate(ckpt, &[&["--prompt", "x"], &args[..]].concat()));
        assert!(e.contains(want), "{e}");
    }
    let long = "a".repeat(600);
    let e = one_line_error(&generate(ckpt, &["--prompt", &long]));
    assert!(e.contains("context"), "{e}");
    // A checkpoint without a tokenizer anywhere near it.
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let e = one_line_error(&generate(ckpt, &["--prompt", "x"]));
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn eval_generates_then_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    scripted_model(&model, "n", " x\n");
    // The model answers "return x" to both: right for `same`, wrong for `plus_one`.
    let problems = dir.path().join("problems.jsonl");
    let rows = [
        (
            "T/0",
            "def same(x):\n    return",
            "same",
            "def check(c):\n    assert c(3) == 3\n",
        ),
        (
            "T/1",
            "def plus_one(x):\n    return",
            "plus_one",
            "def check(c):\n    assert c(3) == 4\n",
        ),
    ];
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, prompt, entry, test)| {
            serde_json::json!({"task_id": id, "prompt": prompt, "entry_point": entry, "test": test})
                .to_string()
        })
        .collect();
    std::fs::write(&problems, lines.join("\n")).unwrap();
    let samples = dir.path().join("samples.jsonl");
    let o = ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        p(&problems),
        "--checkpoint",
        p(&model),
        "--n-samples",
        "3",
        "--temperature",
        "0",
        "--samples",
        p(&samples),
        "--k",
        "1,3",
        "--workers",
        "2",
    ]));
    assert!(stdout(&o).contains("generated 6 samples"), "{}", stdout(&o));
    let written = std::fs::read_to_string(&samples).unwrap();
    assert_eq!(written.lines().count(), 6);
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("samples.jsonl_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["pass_at_k"]["pass@1"], 0.5, "{summary}");
    assert_eq!(summary["pass_at_k"]["pass@3"], 0.5, "{summary}");
    let results = std::fs::read_to_string(dir.path().join("samples.jsonl_results.jsonl")).unwrap();
    for line in results.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["completion"], " x\n");
        assert_eq!(v["passed"], v["task_id"] == "T/0", "{v}");
    }
}
