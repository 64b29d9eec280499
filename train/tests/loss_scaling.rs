//! f16's loss scaling through the one optimizer step: a scaled loss's unscaled gradients make
//! the same update as the loss's own (the scale is a power of two: exact), and a scale so large
//! that the gradients overflow skips the step — weights, optimizer and its step count untouched —
//! and halves the scale. Its own binary: the fused-kernel switch and Burn's RNG are
//! process-wide, and other unit tests flip and draw from them.

use anvil_models::precision::LossScaler;
use anvil_models::{Llama, LlamaConfig, TokenBatch};
use anvil_train::dist::{optimizer_step, scaled};
use anvil_train::optim::{AdamW, GradAccumulator};
use anvil_train::recipe::OptimConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

fn values(model: &Llama) -> Vec<Vec<u32>> {
    struct Values(Vec<Vec<u32>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val().into_data().try_into_vec::<f32>().unwrap();
            self.0.push(v.iter().map(|x| x.to_bits()).collect());
        }
    }
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

#[test]
fn loss_scaling_unscales_exactly_and_skips_overflowed_steps() {
    let device = anvil_models::device::cpu().autodiff();
    let config = LlamaConfig {
        vocab_size: 50,
        d_model: 16,
        n_layers: 1,
        n_heads: 2,
        ..Default::default()
    };
    let model = anvil_models::materialized(config.init(&device));
    let batch = TokenBatch::rows((0..40).map(|i| (i * 7 % 50) as u32).collect(), 2, 20);
    let step = |scaler: Option<&mut LossScaler>| {
        let mut opt = AdamW::new(OptimConfig::default());
        let mut grads = GradAccumulator::default();
        let loss = scaled(model.loss(&batch).nll_sum, scaler.as_deref());
        grads.add(&model, &loss.backward());
        let (m, norm) = optimizer_step(
            None,
            &mut opt,
            model.clone(),
            &mut grads,
            (1e-2, 1.0),
            scaler,
        );
        (values(&m), norm, opt.step)
    };
    let (plain, plain_norm, _) = step(None);
    let mut scaler = LossScaler::default();
    let (unscaled, norm, steps) = step(Some(&mut scaler));
    assert!(unscaled == plain, "unscaled gradients made another update");
    assert_eq!((norm, steps), (plain_norm, 1));
    assert_eq!(
        (scaler.scale, scaler.good_steps, scaler.skipped),
        (65536.0, 1, 0)
    );
    assert!(unscaled != values(&model), "the step changed nothing");

    // 2^126: the scaled loss's gradients overflow f32.
    let huge = 2f64.powi(126);
    let mut scaler = LossScaler {
        scale: huge,
        ..LossScaler::default()
    };
    let (skipped, norm, steps) = step(Some(&mut scaler));
    assert!(
        skipped == values(&model),
        "an overflowed step updated the weights"
    );
    assert!(
        norm.is_infinite() && steps == 0,
        "norm {norm}, optimizer steps {steps}"
    );
    assert_eq!(
        (scaler.scale, scaler.good_steps, scaler.skipped),
        (huge / 2.0, 0, 1)
    );
}
