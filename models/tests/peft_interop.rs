//! LoRA adapters across PEFT and Anvil, on the `llama-gqa` parity base: an adapter PEFT wrote
//! (non-zero B, rsLoRA) loads into Anvil and gives PEFT's logits, and an adapter Anvil wrote
//! gives, in PEFT, the logits Anvil computes — both within 1e-4. CI needs no torch: the adapters
//! and PEFT's logits are committed fixtures (scripts/reference/peft_adapters.py).
//!
//! `cargo test -p anvil-models --test peft_interop -- --ignored` rewrites the Anvil-written
//! adapter; run the script after it.

use anvil_models::lora::{self, LoraConfig};
use anvil_models::{Llama, hf, peft};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("tests/fixtures")
}

fn base() -> Llama {
    hf::import(&fixtures().join("llama-gqa"), &Device::flex()).unwrap()
}

/// `input_ids` (i64 `[B, T]`, stored as f32 by the reader) and PEFT's logits, from `logits.safetensors`.
fn reference(dir: &Path) -> (Vec<u32>, usize, Vec<f32>) {
    let t = hf::read_safetensors(&dir.join("logits.safetensors")).unwrap();
    let (shape, ids) = &t["input_ids"];
    let ids: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
    (ids, shape[0], t["logits"].1.clone())
}

fn anvil_logits(model: &Llama, ids: &[u32], batch: usize) -> Vec<f32> {
    model
        .logits(ids, batch, 0, None)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: max |Δlogit| = {worst:e}");
    eprintln!("{what}: max |Δlogit| = {worst:e}");
}

#[test]
fn an_adapter_peft_wrote_gives_peft_logits() {
    let dir = fixtures().join("peft/peft-written");
    let (ids, batch, want) = reference(&dir);
    let (model, cfg) = peft::load_adapter(base(), &dir).unwrap();
    assert!(cfg.use_rslora, "the fixture exercises rsLoRA scaling");
    // No anvil_base.json: PEFT records the base by name only.
    assert!(!peft::check_base(&model, &dir).unwrap());
    assert_close(
        "PEFT-written adapter",
        &anvil_logits(&model, &ids, batch),
        &want,
    );
    // The adapter matters: without it the logits are the base's.
    let plain = anvil_logits(&base(), &ids, batch);
    assert!(plain.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-2));
}

#[test]
fn an_adapter_anvil_wrote_gives_peft_the_same_logits() {
    let dir = fixtures().join("peft/anvil-written");
    let (ids, batch, want) = reference(&dir);
    let (model, _) = peft::load_adapter(base(), &dir).unwrap();
    assert!(
        peft::check_base(&model, &dir).unwrap(),
        "written on this base"
    );
    assert_close(
        "Anvil-written adapter in PEFT",
        &anvil_logits(&model, &ids, batch),
        &want,
    );
    // Merged into the weights, the same function.
    let merged = lora::merge(model);
    assert_close("merged", &anvil_logits(&merged, &ids, batch), &want);
}

/// Writes `peft/anvil-written/`: adapters on every projection with a seeded non-zero B.
#[test]
#[ignore = "rewrites a committed fixture"]
fn write_the_anvil_adapter_fixture() {
    let device = Device::flex();
    device.seed(17);
    let cfg = LoraConfig {
        r: 8,
        alpha: 16.0,
        target_modules: lora::TARGETS.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut model = lora::apply_lora(base(), &cfg);
    let mut n = 0u32;
    lora::for_each_projection(&mut model, |_, _, l| {
        if let Some(a) = &mut l.lora {
            let [r, out] = a.lora_b.val().dims();
            let values: Vec<f32> = (0..r * out)
                .map(|i| {
                    n = n
                        .wrapping_mul(1_103_515_245)
                        .wrapping_add(12_345 + i as u32);
                    (n >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1
                })
                .collect();
            let t = Tensor::<2>::from_data(TensorData::new(values, [r, out]), &device);
            a.lora_b = Param::from_tensor(t);
        }
    });
    let dir = fixtures().join("peft/anvil-written");
    std::fs::create_dir_all(&dir).unwrap();
    peft::save_adapter(&model, &cfg, "llama-gqa", &dir).unwrap();
}
