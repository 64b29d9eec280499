//! `arch = "diffusion"` end to end on a tiny denoiser: it trains (validation on fixed masks),
//! resumes bit-identically (each step's masks come from the run's seed and the step), `eval
//! perplexity` gives the validation loss, `anvil generate` fills a hole between a prompt and a
//! suffix, and the autoregressive fallback writes the text when (and only when) the denoiser's
//! does not parse, and `eval pass-at-k --checkpoint` scores its infills. Left-to-right-only
//! paths (serving, exports) refuse it in one line.

mod common;
use common::*;
use std::path::Path;

const RUN: &str = r#"[train]
seed = 3
max_steps = 8
batch_size = 4
log_every = 1

[optim]
lr = 1e-2

[schedule]
warmup_steps = 0
min_lr_ratio = 1.0

[eval]
every = 4
batches = 3

[checkpoint]
every = 4
"#;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_denoiser_trains_resumes_and_fills_holes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), RUN);
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "run", p(&recipe), "model.arch=\"diffusion\""];
        args.extend_from_slice(extra);
        anvil(&args)
    };
    let o = ok(train(&["output.name=straight"]));
    assert!(stdout(&o).contains("trained 8 steps"), "{}", stdout(&o));
    let runs = dir.path().join("runs");
    let ckpt = runs.join("straight");
    let m = metrics_by_key(&ckpt);
    let val = &m["val/loss"];
    assert_eq!(val.len(), 2);
    assert!(
        val.iter().all(|(_, v)| v.is_finite() && *v > 0.0),
        "{val:?}"
    );

    // Stopped at 4 and resumed to 8: the same weights (the masks of step s are the same).
    ok(train(&["output.name=split", "train.max_steps=4"]));
    ok(anvil(&[
        "train",
        "run",
        "--resume",
        p(&runs.join("split")),
        "train.max_steps=8",
    ]));
    let weights = |run: &Path| {
        let (m, _) = anvil_infer::load_model(
            &run.join("checkpoints/step-000008"),
            &burn::tensor::Device::flex(),
        )
        .unwrap();
        anvil_models::hf::parameters(&m)
    };
    assert!(
        weights(&ckpt) == weights(&runs.join("split")),
        "weights differ after resume"
    );

    // eval perplexity masks the validation rows as validation did: the same loss.
    let tokens = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("tokens"))
        .find(|p| p.join("tokens.json").is_file())
        .unwrap();
    let o = ok(anvil(&[
        "eval",
        "perplexity",
        "--checkpoint",
        p(&ckpt),
        "--tokens",
        p(&tokens),
        "--batch-size",
        "4",
        "--max-batches",
        "3",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let (loss, want) = (v["loss"].as_f64().unwrap(), val.last().unwrap().1);
    assert!(
        (loss - want).abs() < 1e-4 * want,
        "{loss} vs validation's {want}"
    );

    // A hole between a prompt and a suffix, 6 tokens in 3 steps.
    let infill = |prompt: &str, suffix: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--checkpoint",
            p(&ckpt),
            "--prompt",
            prompt,
            "--suffix",
            suffix,
            "--max-tokens",
            "6",
            "--steps",
            "3",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = ok(anvil(&args));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        (v, stderr(&o))
    };
    let (v, err) = infill("def f(x):\n    return ", "\n", &[]);
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(
        (v["steps"].as_u64(), v["forwards"].as_u64()),
        (Some(3), Some(3)),
        "{v}"
    );
    assert_eq!(v["path"], "diffusion");
    assert!(err.contains("steps/s"), "{err}");
    // Guidance runs the model twice a step; the same seed gives the same text.
    let (g, _) = infill(
        "def f(x):\n    return ",
        "\n",
        &["--cfg", "2", "--seed", "4"],
    );
    assert_eq!(g["forwards"].as_u64(), Some(6), "{g}");
    let (again, _) = infill(
        "def f(x):\n    return ",
        "\n",
        &["--cfg", "2", "--seed", "4"],
    );
    assert_eq!(again["token_ids"], g["token_ids"]);

    // The fallback: an autoregressive model of the same data writes the text exactly when the
    // denoiser's does not parse. A suffix that can never parse forces it; a hole inside a
    // string literal almost always parses, so both paths are seen.
    let ar = tiny_recipe(&dir.path().join("ar"), RUN);
    ok(anvil(&[
        "train",
        "run",
        p(&ar),
        "output.name=ar",
        "train.max_steps=2",
    ]));
    let ar_ckpt = dir.path().join("ar/runs/ar");
    let mut paths = std::collections::BTreeSet::new();
    for (prompt, suffix) in [
        ("x = 1 + (", ")))]]\n"),
        ("s = \"\"\"", "\"\"\"\n"),
        ("s = '''", "'''\n"),
    ] {
        for seed in ["0", "1"] {
            let (v, _) = infill(prompt, suffix, &["--fallback", p(&ar_ckpt), "--seed", seed]);
            let valid = v["diffusion_valid"].as_bool().unwrap();
            assert_eq!(v["path"] == "fallback", !valid, "{v}");
            if valid {
                assert_eq!(v["text"], v["diffusion_text"], "{v}");
            }
            paths.insert(v["path"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(paths.len(), 2, "only {paths:?} taken");

    // pass@k with a denoiser: each body is a span after the prompt.
    let problems = dir.path().join("problems.jsonl");
    let row = serde_json::json!({"task_id": "T/0", "prompt": "def same(x):\n", "entry_point": "same",
                                 "test": "def check(c):\n    assert c(3) == 3\n"});
    std::fs::write(&problems, row.to_string()).unwrap();
    let samples = dir.path().join("s.jsonl");
    let o = ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        p(&problems),
        "--checkpoint",
        p(&ckpt),
        "--samples",
        p(&samples),
        "--n-samples",
        "2",
        "--max-tokens",
        "6",
        "--steps",
        "2",
        "--k",
        "1",
    ]));
    assert!(stdout(&o).contains("generated 2 samples"), "{}", stdout(&o));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&samples)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.iter().all(|r| r["steps"] == 2), "{rows:?}");

    // Autoregressive models refuse diffusion flags; left-to-right serving refuses a denoiser.
    let e = one_line_error(&anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        p(&problems),
        "--checkpoint",
        p(&ar_ckpt),
        "--samples",
        p(&samples),
        "--steps",
        "2",
    ]));
    assert!(e.contains("--steps is for diffusion denoisers"), "{e}");
    let e = one_line_error(&anvil(&["serve", "--checkpoint", p(&ckpt)]));
    assert!(e.contains("does not decode left to right"), "{e}");
    let e = one_line_error(&anvil(&[
        "generate",
        "--checkpoint",
        p(&ar_ckpt),
        "--prompt",
        "x",
        "--steps",
        "3",
    ]));
    assert!(e.contains("are for diffusion denoisers"), "{e}");
    let e = one_line_error(&anvil(&[
        "export",
        "--checkpoint",
        p(&ckpt),
        "--format",
        "gguf",
        "--out",
        p(&dir.path().join("m.gguf")),
    ]));
    assert!(e.contains("no `diffusion` architecture"), "{e}");
}
