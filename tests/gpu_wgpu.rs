//! The GPU path on Burn's wgpu backend, run where a Vulkan/Metal/DX12 device exists — on a
//! machine without a GPU, Mesa's lavapipe (a software Vulkan device: `apt install
//! mesa-vulkan-drivers`). Built only with `--features wgpu` (`scripts/gpu_check.sh`); the default
//! build and CI do not compile the wgpu stack.
//!
//! - The same checkpoint gives the same logits on `cpu` and `wgpu` (within 1e-3: different
//!   kernels, different summation orders).
//! - A short training run on `wgpu` follows the `cpu` run's losses (within 1e-4 relative a step;
//!   measured on lavapipe: 8.5e-8): the same initial weights — drawn on the CPU whatever the
//!   device — and the same updates up to summation order.
//! - Checkpoints move between devices: trained on `wgpu`, generated from on `cpu`.
//! - Mixed precision (`train.precision`) follows f32 where the device has the dtype, and is
//!   refused in one line where it has not.
#![cfg(feature = "wgpu")]

mod common;
use anvil_models::device::{DeviceKind, select};
use common::*;

const RUN: &str = r#"[train]
seed = 2
max_steps = 6
batch_size = 4
log_every = 1

[optim]
lr = 5e-3

[schedule]
warmup_steps = 0

[eval]
every = 0

[checkpoint]
every = 6
"#;

fn losses(run: &std::path::Path) -> Vec<f64> {
    metrics_by_key(run)["train/loss"]
        .iter()
        .map(|(_, v)| *v)
        .collect()
}

#[test]
fn wgpu_matches_cpu_and_checkpoints_move_between_devices() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), RUN);
    let r = recipe.to_str().unwrap();
    ok(anvil(&["train", "run", r, "output.name=cpu"]));
    ok(anvil(&[
        "train",
        "run",
        r,
        "output.name=gpu",
        "train.device=\"wgpu\"",
    ]));
    let runs = dir.path().join("runs");
    let (cpu, gpu) = (losses(&runs.join("cpu")), losses(&runs.join("gpu")));
    assert_eq!(cpu.len(), 6);
    for (step, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "step {}: cpu {a} vs wgpu {b}",
            step + 1
        );
    }
    let rel = cpu
        .iter()
        .zip(&gpu)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0f64, f64::max);
    println!("training losses, cpu {cpu:?}, wgpu {gpu:?}: largest relative difference {rel:.2e}");

    // The same weights, both devices: the same logits.
    let ckpt = runs.join("cpu");
    let on = |kind| {
        let device = select(kind).unwrap();
        let g = anvil_infer::Generator::load_on(&ckpt, None, None, &device).unwrap();
        let ids = g.encode("def f(x):\n    return x + 1\n").unwrap();
        let mut caches = g.model.new_caches();
        g.forward_last(&ids, 1, 0, None, &mut caches).remove(0)
    };
    let (a, b) = (on(DeviceKind::Cpu), on(DeviceKind::Wgpu));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "logits differ by {worst}");
    println!("logits of one checkpoint, cpu vs wgpu: largest difference {worst:.2e}");

    // Trained on wgpu, generated from on the CPU (and on wgpu): checkpoints are device-free.
    let gpu_ckpt = runs.join("gpu");
    for device in ["cpu", "wgpu"] {
        let o = ok(anvil(&[
            "generate",
            "--checkpoint",
            gpu_ckpt.to_str().unwrap(),
            "--prompt",
            "def f(",
            "--max-tokens",
            "8",
            "--ignore-eos",
            "--json",
            "--device",
            device,
        ]));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["token_ids"].as_array().unwrap().len(), 8, "{device}: {v}");
    }
}

/// Mixed precision on the device: where it has the dtype, a bf16/f16 run follows the f32 run's
/// losses (within 2e-3 relative a step); where it has not, the recipe is refused in one line
/// naming `train.precision` before any work.
#[test]
fn wgpu_mixed_precision_follows_f32_or_is_refused() {
    use anvil_models::Precision;
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), RUN);
    let r = recipe.to_str().unwrap();
    let run = |name: &str, precision: Precision| {
        anvil(&[
            "train",
            "run",
            r,
            &format!("output.name={name}"),
            "train.device=\"wgpu\"",
            &format!("train.precision=\"{precision}\""),
        ])
    };
    ok(run("f32", Precision::F32));
    let runs = dir.path().join("runs");
    let reference = losses(&runs.join("f32"));
    let device = select(DeviceKind::Wgpu).unwrap();
    for p in [Precision::Bf16, Precision::F16] {
        if p.check(&device).is_err() {
            let line = one_line_error(&run(p.name(), p));
            assert!(line.contains("train.precision"), "{line}");
            println!("{p}: not supported by this device, refused: {line}");
            continue;
        }
        ok(run(p.name(), p));
        let l = losses(&runs.join(p.name()));
        let worst = l
            .iter()
            .zip(&reference)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0f64, f64::max);
        println!("{p} on wgpu: losses {l:?}, f32 {reference:?}: worst relative gap {worst:.2e}");
        assert!(worst < 2e-3, "{p}: {l:?} vs f32 {reference:?}");
    }
}
