//! 20 AdamW steps from the same weights on the same batches give the same losses as PyTorch +
//! transformers (within 1%): same warmup + cosine schedule, decoupled decay on matrices only,
//! global-norm clipping. Fixtures: `scripts/reference/llama_parity.py`.

use anvil_models::{TokenBatch, hf};
use anvil_train::optim::{AdamW, GradAccumulator, lr_at};
use anvil_train::recipe::{OptimConfig, ScheduleConfig};
use burn::tensor::Device;
use std::path::{Path, PathBuf};

// The manifest dir at run time: `env!` would bake in the path of whichever clone built this binary.
fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("../models/tests/fixtures")
        .join(name)
}

fn tensor_bytes(path: &Path, name: &str) -> (Vec<usize>, Vec<u8>, safetensors::Dtype) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    (v.shape().to_vec(), v.data().to_vec(), v.dtype())
}

fn check(name: &str) {
    let dir = fixture(name);
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap()).unwrap();
    let f = |k: &str| training[k].as_f64().unwrap();
    let u = |k: &str| training[k].as_u64().unwrap() as usize;
    let optim = OptimConfig {
        lr: f("lr"),
        beta1: f("beta1"),
        beta2: f("beta2"),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        grad_clip: f("grad_clip"),
        ..OptimConfig::default()
    };
    let schedule = ScheduleConfig {
        warmup_steps: u("warmup_steps"),
        min_lr_ratio: f("min_lr_ratio"),
    };
    let (steps, batch, seq) = (u("steps"), u("batch"), u("seq"));
    let reference = dir.join("reference.safetensors");
    let (shape, ids, dtype) = tensor_bytes(&reference, "train_ids");
    assert_eq!(
        (shape, dtype),
        (vec![steps, batch, seq], safetensors::Dtype::I64)
    );
    let ids: Vec<u32> = ids
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let (_, losses, _) = tensor_bytes(&reference, "losses");
    let expected: Vec<f32> = losses
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let device = Device::flex().autodiff();
    let mut model = hf::import(&dir, &device).unwrap();
    let mut opt = AdamW::new(optim.clone());
    let per_step = batch * seq;
    for step in 0..steps {
        let batch = TokenBatch {
            input_ids: ids[step * per_step..(step + 1) * per_step].to_vec(),
            segment_ids: None,
            loss_mask: None,
            batch,
            seq_len: seq,
            tree: None,
            position_targets: None,
        };
        let out = model.loss(&batch);
        let loss = out.nll_sum / out.n_targets as f64;
        let value = loss.clone().into_scalar::<f32>();
        let rel = ((value - expected[step]) / expected[step]).abs();
        println!(
            "{name} step {step}: anvil {value:.5} torch {:.5} (rel {rel:.2e})",
            expected[step]
        );
        assert!(
            rel < 0.01,
            "{name}: step {step} loss {value} vs {}",
            expected[step]
        );
        let mut grads = GradAccumulator::default();
        grads.add(&model, &loss.backward());
        grads.clip_global_norm(optim.grad_clip);
        model = opt.step(model, lr_at(step, optim.lr, &schedule, steps), &mut grads);
    }
    // The run must have learned something, or agreeing on it would prove little.
    assert!(expected[steps - 1] < expected[0] - 0.1);
}

#[test]
fn twenty_steps_match_pytorch_gqa() {
    check("llama-gqa");
}

#[test]
fn twenty_steps_match_pytorch_tied_yarn() {
    check("llama-tied-yarn");
}
