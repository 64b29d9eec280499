//! Mixed precision on the CPU backend: under bf16 and f16 autocast the model's loss and every
//! parameter's gradient stay near the f32 run's, the gradients come back as f32 (the master
//! weights' dtype), the products really ran in the lower dtype (the gradients are not the f32
//! ones to the bit), and dropping the guard gives the f32 run back exactly.

use anvil_models::precision::{Precision, autocast};
use anvil_models::{Llama, LlamaConfig, TokenBatch, materialized};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor};

struct Collect<'a>(&'a Gradients, Vec<Vec<f32>>);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let g = p
            .val()
            .grad(self.0)
            .expect("every parameter gets a gradient");
        self.1.push(
            g.into_data()
                .try_into_vec::<f32>()
                .expect("an f32 gradient"),
        );
    }
}

fn loss_and_grads(model: &Llama, batch: &TokenBatch, precision: Precision) -> (f32, Vec<Vec<f32>>) {
    let _cast = autocast(precision);
    let out = model.loss(batch);
    let loss = out.nll_sum / out.n_targets as f64;
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut c = Collect(&grads, Vec::new());
    model.visit(&mut c);
    (value, c.1)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}

#[test]
fn mixed_precision_follows_f32() {
    let (batch, seq, vocab) = (2, 40, 101);
    let tokens = TokenBatch::rows(
        (0..batch * seq).map(|i| (i * 37 % vocab) as u32).collect(),
        batch,
        seq,
    );
    let config = LlamaConfig {
        vocab_size: vocab,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: seq,
        ..Default::default()
    };
    let device = Device::flex().autodiff();
    let model = materialized(config.init(&device));
    let (l32, g32) = loss_and_grads(&model, &tokens, Precision::F32);
    for (precision, tolerance) in [(Precision::Bf16, 1e-3), (Precision::F16, 1e-4)] {
        let (l, g) = loss_and_grads(&model, &tokens, precision);
        println!("{precision}: loss {l} vs f32 {l32}");
        assert!(
            ((l - l32) / l32).abs() < tolerance,
            "{precision}: loss {l} vs f32 {l32}"
        );
        // The loss of a small random model can round to the same f32; its gradients cannot.
        assert!(
            g != g32,
            "{precision}: the products did not run in {precision}"
        );
        assert_eq!(g.len(), g32.len());
        let mut lowest = 1f64;
        for (i, (a, b)) in g.iter().zip(&g32).enumerate() {
            let c = cosine(a, b);
            assert!(c > 0.99, "{precision}: parameter {i}: gradient cosine {c}");
            lowest = lowest.min(c);
        }
        println!("{precision}: lowest gradient cosine to f32 {lowest}");
    }
    // The guard is gone: the f32 run (fused kernels and all) again, to the bit.
    let (again, g_again) = loss_and_grads(&model, &tokens, Precision::F32);
    assert_eq!(again, l32);
    assert_eq!(g_again, g32);
}
