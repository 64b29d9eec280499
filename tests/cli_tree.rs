//! `arch = "tree"` end to end on a tiny model: it trains on shards with tree positions, resumes
//! bit-identically, `eval perplexity` reads its positions, and what it cannot do yet (generate)
//! or cannot be (an HF export) is one line; shards without positions are refused naming the key.

mod common;
use common::*;
use std::path::Path;

const TREE: &str = r#"[train]
seed = 7
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

fn train(recipe: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "run", recipe.to_str().unwrap()];
    args.extend_from_slice(extra);
    anvil(&args)
}

#[test]
fn a_tree_model_trains_resumes_and_is_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), TREE);
    let tree = [
        "model.arch=\"tree\"",
        "data.tokenize.ast=true",
        "data.tokenize.ast_max_path=16",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        tree.iter().chain(extra).copied().collect()
    };
    let o = ok(train(&recipe, &with(&["output.name=straight"])));
    assert!(stdout(&o).contains("trained 8 steps"), "{}", stdout(&o));
    let runs = dir.path().join("runs");
    let model_json =
        std::fs::read_to_string(runs.join("straight/checkpoints/step-000008/model.json")).unwrap();
    assert!(model_json.contains("\"arch\": \"tree\""), "{model_json}");

    // Stopped at 4 and resumed to 8 (constant learning rate): the same weights.
    ok(train(
        &recipe,
        &with(&["output.name=split", "train.max_steps=4"]),
    ));
    let split = runs.join("split");
    ok(anvil(&[
        "train",
        "run",
        "--resume",
        split.to_str().unwrap(),
        "train.max_steps=8",
    ]));
    let weights = |run: &Path| {
        let (m, _) =
            anvil_infer::load_model(&run.join("checkpoints/step-000008"), &Default::default())
                .unwrap();
        anvil_models::hf::parameters(&m)
    };
    let (a, b) = (weights(&runs.join("straight")), weights(&split));
    assert!(
        a.iter().any(|(n, _, _)| n.starts_with("tree.")),
        "no tree parameters"
    );
    assert!(a == b, "weights differ after resume");

    // The projection starts at zero and bias tables too: trained, they are not zero any more.
    for (name, _, values) in a.iter().filter(|(n, _, _)| n.starts_with("tree.")) {
        assert!(values.iter().any(|&v| v != 0.0), "{name} never moved");
    }
    let m = metrics_by_key(&runs.join("straight"));
    assert_eq!(m["val/loss"].len(), 2);

    // eval perplexity reads the positions from the shards, as validation did.
    let tokens = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("tokens"))
        .find(|p| p.join("tokens.json").is_file())
        .unwrap();
    let ckpt = runs.join("straight");
    let o = ok(anvil(&[
        "eval",
        "perplexity",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--tokens",
        tokens.to_str().unwrap(),
        "--batch-size",
        "4",
        "--max-batches",
        "3",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let val_loss = m["val/loss"].last().unwrap().1;
    let loss = v["loss"].as_f64().unwrap();
    // The same rows as validation's 3 batches of 4: the same loss, up to summation order.
    assert!(
        (loss - val_loss).abs() < 1e-4 * val_loss,
        "{loss} vs validation's {val_loss}"
    );

    // Not yet: generation; never: an HF export.
    let e = one_line_error(&anvil(&[
        "generate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "def f(",
        "--max-tokens",
        "4",
    ]));
    assert!(
        e.contains("tree models (`arch = \"tree\"`) cannot generate yet"),
        "{e}"
    );
    let out = dir.path().join("hf");
    let e = one_line_error(&anvil(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("no tree transformer"), "{e}");
}

#[test]
fn a_tree_model_needs_shards_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), TREE);
    let e = one_line_error(&train(&recipe, &["model.arch=\"tree\"", "output.name=t"]));
    assert!(e.contains("data.tokenize.ast = true"), "{e}");
    let e = one_line_error(&train(&recipe, &["model.arch=\"forest\""]));
    assert!(e.contains("unknown architecture `forest`"), "{e}");
    let e = one_line_error(&train(
        &recipe,
        &[
            "model.arch=\"tree\"",
            "model.tree.bias=[true,false,true]",
            "data.tokenize.ast=true",
        ],
    ));
    assert!(e.contains("model.tree.bias"), "{e}");
}
