//! Logits of HF transformers' `LlamaForCausalLM` and of Anvil's Llama on the same weights and
//! tokens agree to 1e-4 (f32). The fixtures were written by `scripts/reference/llama_parity.py`
//! (PyTorch + transformers), so this test needs no torch.

use anvil_models::hf;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

// The manifest dir at run time: `env!` would bake in the path of whichever clone built this binary.
fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("tests/fixtures")
        .join(name)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_logits(name: &str) {
    let dir = fixture(name);
    let device = Device::flex();
    let model = hf::import(&dir, &device).unwrap();
    let reference = dir.join("reference.safetensors");
    let ids = int_tensor(&reference, "input_ids");
    let (logit_shape, expected) = float_tensor(&reference, "logits");
    let batch = logit_shape[0];
    let got = model.logits(&ids, batch, 0, None);
    assert_eq!(got.dims().to_vec(), logit_shape);
    let got = got.into_data().try_into_vec::<f32>().unwrap();
    let diff = max_abs_diff(&got, &expected);
    println!("{name}: max |Δlogit| = {diff:e}");
    assert!(diff <= 1e-4, "{name}: logits differ by {diff}");
}

/// An int64 tensor from a safetensors file, as token ids.
pub fn int_tensor(path: &Path, name: &str) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::I64);
    v.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

/// An f32 tensor from a safetensors file.
pub fn float_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::F32);
    let data = v
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v.shape().to_vec(), data)
}

#[test]
fn logits_match_transformers_gqa() {
    check_logits("llama-gqa");
}

#[test]
fn logits_match_transformers_tied_yarn() {
    check_logits("llama-tied-yarn");
}

#[test]
fn logits_match_transformers_linear_rope() {
    check_logits("llama-linear");
}

#[test]
fn export_then_import_is_identical() {
    let device = Device::flex();
    let model = hf::import(&fixture("llama-gqa"), &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    hf::export(&model, out.path()).unwrap();
    // Same tensors, same names, same bytes as transformers wrote.
    let a = hf::read_safetensors(&fixture("llama-gqa/model.safetensors")).unwrap();
    let b = hf::read_safetensors(&out.path().join("model.safetensors")).unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, (shape, data)) in &a {
        assert_eq!(&b[k].0, shape, "{k}");
        assert!(b[k].1 == *data, "{k} differs");
    }
    let back = hf::import(out.path(), &device).unwrap();
    assert_eq!(back.config, model.config);
}

#[test]
fn import_rejects_a_wrong_shape_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("llama-gqa");
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 176", "\"intermediate_size\": 160");
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let err = hf::import(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlp.gate_proj.weight") && err.contains("shape"),
        "{err}"
    );
}
