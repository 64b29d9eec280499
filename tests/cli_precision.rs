//! `train.precision`: bf16 and f16 runs follow the f32 run's losses closely without being it,
//! checkpoints stay f32 (they load and generate like any other), an f16 run records its loss
//! scale and resumes bit-identically, and an unknown precision is one line naming the key.

mod common;
use burn::tensor::Device;
use common::*;
use std::path::Path;

const RECIPE: &str = r#"[train]
seed = 3
max_steps = 8
batch_size = 4
log_every = 1

[optim]
lr = 1e-2

[schedule]
warmup_steps = 2

[eval]
every = 0
batches = 2

[checkpoint]
every = 4
keep_last = 2
keep_best = false
"#;

fn train(recipe: &Path, name: &str, precision: &str) {
    ok(anvil(&[
        "train",
        "run",
        recipe.to_str().unwrap(),
        &format!("output.name={name}"),
        &format!("train.precision=\"{precision}\""),
    ]));
}

/// A checkpoint's parameters as f32 bit patterns, in order.
fn params(ckpt: &Path) -> Vec<Vec<u32>> {
    let (model, _) = anvil_infer::load_model(ckpt, &Device::flex()).unwrap();
    anvil_models::hf::parameters(&model)
        .into_iter()
        .map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn state(ckpt: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap()
}

#[test]
fn mixed_precision_follows_f32_and_f16_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(tmp.path(), RECIPE);
    let runs = tmp.path().join("runs");
    for p in ["f32", "bf16", "f16"] {
        train(&recipe, p, p);
    }
    let losses = |name: &str| -> Vec<f64> {
        metrics_by_key(&runs.join(name))["train/loss"]
            .iter()
            .map(|s| s.1)
            .collect()
    };
    let reference = losses("f32");
    assert_eq!(reference.len(), 8);
    assert!(
        reference[7] < reference[0],
        "f32 did not learn: {reference:?}"
    );
    for (p, tolerance) in [("bf16", 2e-3), ("f16", 5e-4)] {
        let l = losses(p);
        let worst = l
            .iter()
            .zip(&reference)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0f64, f64::max);
        println!("{p}: losses {l:?}; worst relative gap to f32 {worst:e}");
        assert!(worst < tolerance, "{p}: {l:?} vs f32 {reference:?}");
        assert!(l != reference, "{p}: the same losses as f32 to the bit");
    }

    // Checkpoints hold f32 master weights: they load and generate like an f32 run's.
    let ckpt = runs.join("bf16/checkpoints/step-000008");
    let o = ok(anvil(&[
        "generate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "def f(",
        "--max-tokens",
        "4",
    ]));
    assert!(!stdout(&o).is_empty());
    assert!(
        state(&ckpt).get("loss_scaler").is_none(),
        "bf16 scales no loss"
    );

    // f16: the scale and its clean steps are in the checkpoint and the metrics.
    let f16 = runs.join("f16");
    let s = state(&f16.join("checkpoints/step-000008"));
    assert_eq!(s["loss_scaler"]["scale"], 65536.0, "{s}");
    assert_eq!(s["loss_scaler"]["good_steps"], 8, "{s}");
    let m = metrics_by_key(&f16);
    assert_eq!(m["train/loss_scale"].len(), 8);
    assert!(m["train/skipped_steps"].iter().all(|s| s.1 == 0.0));

    // Stopped after step 4 and resumed: step 8 is the uninterrupted run's, bit for bit.
    train(&recipe, "f16-again", "f16");
    let again = runs.join("f16-again");
    std::fs::remove_dir_all(again.join("checkpoints/step-000008")).unwrap();
    let o = ok(anvil(&[
        "train",
        "run",
        "--resume",
        again.to_str().unwrap(),
    ]));
    assert!(stdout(&o).contains("trained 8 steps"), "{}", stdout(&o));
    let (a, b) = (
        f16.join("checkpoints/step-000008"),
        again.join("checkpoints/step-000008"),
    );
    assert!(
        params(&a) == params(&b),
        "the resumed f16 run ended elsewhere"
    );
    assert_eq!(state(&a)["loss_scaler"], state(&b)["loss_scaler"]);

    // An unknown precision: one line naming the key, before any work.
    let o = anvil(&[
        "train",
        "run",
        recipe.to_str().unwrap(),
        "train.precision=\"fp8\"",
    ]);
    let line = one_line_error(&o);
    assert!(
        line.contains("train.precision") && line.contains("fp8"),
        "{line}"
    );
}
