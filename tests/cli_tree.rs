//! `arch = "tree"` end to end on a tiny model: it trains on shards with tree positions, resumes
//! bit-identically, `eval perplexity` reads its positions; decoding places each token as the
//! shards did (token by token, a document's positions are the loader's) and its KV cache gives
//! the full recompute's logits; it generates, serves and is scored with pass@k; what it cannot be
//! (an HF export) is one line; shards without positions are refused naming the key.

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
        let (m, _) = anvil_infer::load_model(
            &run.join("checkpoints/step-000008"),
            &burn::tensor::Device::flex(),
        )
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

    decoding_places_tokens_as_the_shards_did(&ckpt, &tokens);

    // It generates (sampling and syntax-aware beam search), serves and is scored with pass@k.
    let greedy = ok(anvil(&[
        "generate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "def f(x):\n    return",
        "--max-tokens",
        "12",
        "--ignore-eos",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(stdout(&greedy).trim()).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 12, "{v}");
    ok(anvil(&[
        "generate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "def f(x):\n",
        "--max-tokens",
        "6",
        "--beam",
        "2",
        "--syntax",
        "python",
    ]));
    let body = serde_json::json!({
        "prompt": "def f(x):\n    return", "max_tokens": 12, "temperature": 0, "ignore_eos": true,
    });
    let (served, _, _) = serve_once(&["--checkpoint", ckpt.to_str().unwrap()], &body);
    let served = served["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(
        served,
        v["text"].as_str().unwrap(),
        "serve and generate differ"
    );
    let problems = dir.path().join("problems.jsonl");
    let row = serde_json::json!({"task_id": "T/0", "prompt": "def same(x):\n", "entry_point": "same",
                                 "test": "def check(c):\n    assert c(3) == 3\n"});
    std::fs::write(&problems, row.to_string()).unwrap();
    let samples = dir.path().join("samples.jsonl");
    let o = ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n-samples",
        "2",
        "--max-tokens",
        "8",
        "--samples",
        samples.to_str().unwrap(),
        "--k",
        "1",
    ]));
    assert!(stdout(&o).contains("generated 2 samples"), "{}", stdout(&o));

    // Never: an HF export.
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
    assert!(e.contains("no `tree` architecture"), "{e}");
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

/// A document of the shards fed to the decoder's position tracker as a prompt and then token by
/// token gets exactly the positions the loader read; and decoding it with the KV cache (each
/// step given those positions) gives, at every position, the logits of one forward pass over the
/// whole document with the loader's positions.
fn decoding_places_tokens_as_the_shards_did(ckpt: &Path, tokens: &Path) {
    let g = anvil_infer::Generator::load(ckpt, None).unwrap();
    let rows = anvil_train::loader::TokenRows::load_with_tree(
        tokens,
        anvil_data::shard::Split::Val,
        g.vocab_size(),
    )
    .unwrap();
    let vocab = g.vocab_size();
    let mut checked = 0;
    for r in 0..rows.len() {
        let b = rows.batch(&[r]);
        let (seg, want_all) = (b.segment_ids.as_ref().unwrap(), b.tree.as_ref().unwrap());
        let seq = b.seq_len;
        // Documents that start inside the row (after an end-of-text token), to its end.
        for s in (1..seq).filter(|&s| seg[s] != seg[s - 1]) {
            let e = (s + 1..seq).find(|&i| seg[i] != seg[s]).unwrap_or(seq);
            if e - s < 8 || checked >= 4 {
                continue;
            }
            let doc = &b.input_ids[s..e];
            let want = want_all.rows(s..e);
            assert!(want.depth.iter().any(|&d| d > 1), "row {r}: no positions");
            let prompt = 3;
            let mut tree = g.tree_rows(&[&doc[..prompt]], prompt).unwrap().unwrap();
            let mut caches = g.model.new_caches();
            let mut cached = vec![g.forward_last(&doc[..prompt], 1, 0, Some(&tree), &mut caches)];
            for (i, &id) in doc.iter().enumerate().skip(prompt) {
                tree.push(&g, &[id]).unwrap();
                cached.push(g.forward_last(&[id], 1, i, Some(&tree), &mut caches));
            }
            assert_eq!(tree.batch(), want, "row {r}, document at {s}");

            let h = g
                .model
                .hidden_in_tree(doc, 1, 0, None, Some(&want), None, &mut Vec::new());
            let full: Vec<f32> = h
                .matmul(g.model.head_weight().unsqueeze())
                .into_data()
                .convert::<f32>()
                .try_into_vec()
                .unwrap();
            for (step, logits) in cached.iter().enumerate() {
                let at = prompt - 1 + step;
                let diff = logits[0]
                    .iter()
                    .zip(&full[at * vocab..(at + 1) * vocab])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-4, "row {r}, document at {s}, token {at}: {diff}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} documents start inside a validation row"
    );
}
