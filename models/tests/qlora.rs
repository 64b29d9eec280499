//! QLoRA: the frozen base kept in Q8_0/Q4_0 blocks. The adapted model must compute what LoRA on
//! the dequantized base computes (up to the activations' rounding to Q8_0 in the int8 kernel),
//! give the adapters the same gradients, never touch the blocks, and merge, export and
//! fingerprint as its dequantized weights.

mod support;

use anvil_models::lora::{self, LoraConfig};
use anvil_models::quant::GgmlType;
use anvil_models::{Llama, hf, peft};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use support::*;

/// The adapters' gradients of the summed loss, by parameter path.
fn adapter_grads(model: &Llama) -> Vec<(String, Vec<f32>)> {
    let grads = model.loss(&batch()).nll_sum.backward();
    struct G<'a>(
        &'a burn::tensor::Gradients,
        Vec<String>,
        Vec<(String, Vec<f32>)>,
    );
    impl ModuleVisitor for G<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let path = self.1.join(".");
            match p.val().grad(self.0) {
                Some(g) => {
                    assert!(
                        lora::is_adapter_path(&path),
                        "the base got a gradient: {path}"
                    );
                    self.2.push((
                        path,
                        g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
                    ));
                }
                None => assert!(!lora::is_adapter_path(&path), "no gradient for {path}"),
            }
        }
    }
    let mut g = G(&grads, Vec::new(), Vec::new());
    model.visit(&mut g);
    g.2
}

fn blocks(model: &Llama) -> Vec<Vec<u8>> {
    let mut m = model.clone();
    let mut out = Vec::new();
    lora::for_each_projection(&mut m, |_, _, l| {
        out.extend(l.quant.as_ref().map(|q| q.blocks().to_vec()))
    });
    out
}

#[test]
fn qlora_computes_lora_on_the_dequantized_base() {
    let _rng = rng();
    let device = Device::flex().autodiff();
    for (config, ty) in [
        (dense(), GgmlType::Q8_0),
        (dense(), GgmlType::Q4_0),
        (mixtral(), GgmlType::Q4_0),
    ] {
        device.seed(11);
        let adapted = random_b(lora::apply_lora(config.init(&device), &all_targets(4)));
        let (q, n) = lora::quantize_base(adapted, ty);
        // Mixtral's experts here have d_ff = 48 inputs into down_proj: not whole blocks, so
        // those stay f32; everything else is quantized.
        let mut m = q.clone();
        let (mut total, mut f32_left) = (0, Vec::new());
        lora::for_each_projection(&mut m, |path, _, l| {
            total += 1;
            if l.quant.is_none() {
                f32_left.push(path.to_string());
            }
        });
        assert_eq!(n + f32_left.len(), total);
        assert!(
            f32_left.iter().all(|p| p.ends_with("down_proj")),
            "{f32_left:?}"
        );
        assert!(n > 0 && lora::is_quantized(&q));

        // The reference: the same adapters on f32 weights holding the dequantized values.
        let reference = lora::dequantize_base(q.clone());
        assert!(!lora::is_quantized(&reference));
        let (lq, lr) = (logits(&q), logits(&reference));
        let rel = max_rel(&lq, &lr);
        println!(
            "{ty:?} moe={}: logits max rel diff {rel:.2e}",
            config.moe.is_some()
        );
        assert!(rel < 0.03, "{ty:?}: logits differ by {rel}");

        let before = blocks(&q);
        let (gq, gr) = (adapter_grads(&q), adapter_grads(&reference));
        assert_eq!(gq.len(), gr.len());
        for ((p, a), (p2, b)) in gq.iter().zip(&gr) {
            assert_eq!(p, p2);
            let rel = max_rel(a, b);
            assert!(rel < 0.05, "{ty:?} {p}: gradient differs by {rel}");
        }
        assert_eq!(before, blocks(&q), "the blocks changed");
    }
}

#[test]
fn merging_exporting_and_fingerprints_see_the_dequantized_weights() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(12);
    let adapted = random_b(lora::apply_lora(dense().init(&device), &all_targets(2)));
    let (q, _) = lora::quantize_base(adapted, GgmlType::Q8_0);
    let reference = lora::dequantize_base(q.clone());

    let merged = lora::merge(q.clone());
    assert!(!lora::is_quantized(&merged) && !lora::has_adapters(&merged));
    let diff = max_rel(&logits(&merged), &logits(&lora::merge(reference.clone())));
    assert!(diff <= 1e-5, "merged QLoRA vs merged dequantized: {diff}");

    // Exporters read f32 values, never the empty placeholders.
    let base = lora::remove_adapters(q.clone());
    let params = hf::parameters(&*lora::f32_base(&base));
    let want = hf::parameters(&lora::remove_adapters(reference.clone()));
    assert_eq!(params, want);
    let dir = tempfile::tempdir().unwrap();
    hf::export(&base, dir.path()).unwrap();
    let exported = hf::import(dir.path(), &device).unwrap();
    assert_eq!(hf::parameters(&exported), want);

    assert_eq!(
        peft::base_fingerprint(&q),
        peft::base_fingerprint(&reference)
    );
}

#[test]
fn quantizing_twice_keeps_the_blocks() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(13);
    let model = dense().init(&device);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let (q, _) = lora::quantize_base(model.clone(), ty);
        // Dequantized values re-quantize to the same blocks: a quantized checkpoint loaded and
        // kept in memory holds exactly the file's blocks.
        let (again, _) = lora::quantize_base(lora::dequantize_base(q.clone()), ty);
        assert_eq!(blocks(&q), blocks(&again), "{ty:?}");
    }
    let cfg = LoraConfig {
        base_quant: Some("q4_0".into()),
        ..all_targets(2)
    };
    assert_eq!(cfg.base_quant_type(), Ok(Some(GgmlType::Q4_0)));
}

/// Not a test: times the int8 path against f32 gemm and against the banded dequantize+gemm path
/// from decode-sized to training-sized inputs (`cargo test --release -p anvil-models --test qlora --
/// --ignored --nocapture`). The figures in docs/lora.md come from it.
#[test]
#[ignore]
fn probe_qmatmul_speed() {
    use anvil_models::kernels::{self, MatRef, qmatmul};
    use std::time::Instant;
    let (k, n) = (768, 768);
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 5e4)
        .collect();
    for rows in [1usize, 4, 16, 64, 2048] {
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 104729 % 997) as f32 - 498.0) / 500.0)
            .collect();
        let reps = if rows == 2048 { 5 } else { 100 };
        let time = |f: &dyn Fn() -> Vec<f32>| {
            let _ = f();
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(f());
            }
            t.elapsed().as_secs_f64() / reps as f64 * 1e3
        };
        let f32_ms =
            time(&|| kernels::matmul_new(MatRef::dense(&x, rows, k), MatRef::dense(&w, k, n)));
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let q = qmatmul::QuantMatrix::quantize(&w, k, n, ty).unwrap();
            let int8 = time(&|| qmatmul::qmatmul_int8(&x, rows, &q));
            let deq = time(&|| qmatmul::qmatmul_gemm(&x, rows, &q));
            let dy: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
            let bwd = time(&|| qmatmul::qmatmul_backward(&dy[..rows * n], rows, &q));
            println!(
                "rows {rows:5} {k}x{n} {ty:?}: f32 gemm {f32_ms:8.3} ms, int8 {int8:8.3} ms, \
                 dequantize+gemm {deq:8.3} ms, backward {bwd:8.3} ms ({:?})",
                qmatmul::dot_level()
            );
        }
    }
}
