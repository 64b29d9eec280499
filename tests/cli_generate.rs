//! `anvil generate` and `anvil eval pass-at-k --checkpoint` on scripted models (a bigram model
//! that answers a prompt with known text), so every output can be checked exactly.

mod common;

use anvil_infer::testing::{bigram_model, byte_tokenizer, indent_model, scripted_model, token_id};
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
        (vec!["-n", "1001"], "-n must be at most 1000"),
        (vec!["--beam", "65"], "--beam must be at most 64"),
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

#[test]
fn samples_and_beams_must_fit_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    scripted_model(dir.path(), "n", " x\n");
    // 1000 rows of a 512-token context hold about 1 GiB of KV cache here: more than 64 MiB.
    let limited = |args: &[&str]| {
        let mut a = vec![
            "generate",
            "--checkpoint",
            p(dir.path()),
            "--prompt",
            "return",
        ];
        a.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_anvil"))
            .args(&a)
            .env("ANVIL_MEMORY_LIMIT_MB", "64")
            .output()
            .unwrap()
    };
    let e = one_line_error(&limited(&["-n", "1000", "--max-tokens", "500"]));
    assert!(e.contains("-n 1000") && e.contains("KV caches"), "{e}");
    let e = one_line_error(&limited(&["--beam", "64", "--max-tokens", "5000"]));
    assert!(e.contains("--beam 64"), "{e}");
    // Within the limit it runs.
    let o = ok(limited(&["-n", "2", "--max-tokens", "4", "--json"]));
    assert_eq!(stdout(&o).lines().count(), 2);
}

#[test]
fn token_healing_is_on_by_default_and_can_be_turned_off() {
    // The model writes code after ":" but ends the text after a lone newline, the situation of a
    // HumanEval prompt on a model trained on raw code.
    let dir = tempfile::tempdir().unwrap();
    indent_model(dir.path());
    let ckpt = p(dir.path());
    let prompt = "def same(y):\n";
    assert_eq!(
        stdout(&ok(generate(ckpt, &["--prompt", prompt]))),
        "    return y\n\n"
    );
    let o = ok(generate(ckpt, &["--prompt", prompt, "--json"]));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["text"], "    return y\n");
    assert_eq!(v["healed_tokens"], 1);
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 4);
    let o = ok(generate(
        ckpt,
        &["--prompt", prompt, "--no-token-healing", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["text"].as_str(), v["healed_tokens"].as_u64()),
        (Some(""), Some(0))
    );
    // Beam search too.
    let beam = ["--prompt", prompt, "--beam", "2", "--syntax", "python"];
    assert_eq!(stdout(&ok(generate(ckpt, &beam))), "    return y\n\n");
    let o = ok(generate(
        ckpt,
        &[&beam[..], &["--no-token-healing"]].concat(),
    ));
    assert_eq!(stdout(&o), "\n");

    // eval pass-at-k --checkpoint: the right answer with healing, nothing without.
    let problems = dir.path().join("problems.jsonl");
    let row = serde_json::json!({"task_id": "T/0", "prompt": prompt, "entry_point": "same",
                                 "test": "def check(c):\n    assert c(3) == 3\n"});
    std::fs::write(&problems, row.to_string()).unwrap();
    let eval = |extra: &[&str]| {
        let samples = dir.path().join(format!("s{}.jsonl", extra.len()));
        let mut args = vec![
            "eval",
            "pass-at-k",
            "--problems",
            p(&problems),
            "--checkpoint",
            ckpt,
            "--temperature",
            "0",
            "--samples",
            p(&samples),
            "--k",
            "1",
            "--workers",
            "1",
        ];
        args.extend_from_slice(extra);
        let o = ok(anvil(&args));
        let row: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&samples).unwrap().trim()).unwrap();
        (row["completion"].as_str().unwrap().to_string(), stdout(&o))
    };
    let (healed, out) = eval(&[]);
    assert_eq!(healed, "    return y\n");
    assert!(out.contains("pass@1 1.0000"), "{out}");
    let (plain, out) = eval(&["--no-token-healing"]);
    assert_eq!(plain, "");
    assert!(out.contains("pass@1 0.0000"), "{out}");
}
