//! Per-sequence log-probabilities (what DPO and GRPO compare) and the loss mask of supervised
//! fine-tuning, against a brute-force log-softmax of the model's own logits, with the fused
//! kernels and with Burn's composed ops. One test in its own binary, as it switches the kernels
//! for the process.

use anvil_models::{CausalLm, Llama, LlamaConfig, TokenBatch, fused};
use burn::tensor::Device;

/// `Σ log p(target)` per row, from `logits` of each row alone (no packing), over the targets
/// `batch.targets()` selects.
fn brute_force(model: &Llama, batch: &TokenBatch) -> Vec<f64> {
    let (targets, weights, _) = batch.targets();
    let t = batch.seq_len;
    (0..batch.batch)
        .map(|r| {
            let ids = &batch.input_ids[r * t..(r + 1) * t];
            let logits: Vec<f32> = model
                .logits(ids, 1, 0, None)
                .into_data()
                .try_into_vec()
                .unwrap();
            let vocab = logits.len() / t;
            (0..t)
                .filter(|&i| weights[r * t + i] > 0.0)
                .map(|i| {
                    let row = &logits[i * vocab..(i + 1) * vocab];
                    let max = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                    let lse = max
                        + row
                            .iter()
                            .map(|&x| (x as f64 - max).exp())
                            .sum::<f64>()
                            .ln();
                    row[targets[r * t + i] as usize] as f64 - lse
                })
                .sum()
        })
        .collect()
}

#[test]
fn sequence_logprobs_and_the_loss_mask_match_a_brute_force_log_softmax() {
    let (rows, seq, vocab) = (3, 24, 61);
    let input_ids: Vec<u32> = (0..rows * seq).map(|i| (i * 17 % vocab) as u32).collect();
    // SFT rows: a prompt (not predicted), then the completion (predicted).
    let loss_mask: Vec<bool> = (0..rows * seq).map(|i| i % seq >= 5 + i / seq).collect();
    let config = LlamaConfig {
        vocab_size: vocab,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        max_seq_len: seq,
        ..Default::default()
    };
    for fused_on in [true, false] {
        fused::set_enabled(fused_on);
        let device = Device::flex().autodiff();
        device.seed(5);
        let model = config.init(&device);
        for mask in [None, Some(loss_mask.clone())] {
            let batch = TokenBatch {
                input_ids: input_ids.clone(),
                segment_ids: None,
                loss_mask: mask.clone(),
                batch: rows,
                seq_len: seq,
                tree: None,
                position_targets: None,
            };
            let want = brute_force(&model, &batch);
            let lp = CausalLm::sequence_logprobs(&model, &batch);
            let got: Vec<f32> = lp.clone().into_data().try_into_vec().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-3 * w.abs().max(1.0),
                    "fused {fused_on}, mask {}: {got:?} vs {want:?}",
                    mask.is_some()
                );
            }
            // The loss is the same sum, over the same targets.
            let out = CausalLm::loss(&model, &batch);
            let nll = out.nll_sum.into_scalar::<f32>() as f64;
            let total: f64 = want.iter().sum();
            assert!((nll + total).abs() < 1e-3 * total.abs(), "{nll} vs {total}");
            let expected_targets = match &mask {
                None => rows * (seq - 1),
                Some(m) => (0..rows * seq).filter(|&i| i % seq != 0 && m[i]).count(),
            };
            assert_eq!(out.n_targets, expected_targets);
            // Differentiable: a policy-gradient loss on it reaches the weights.
            let grads = lp.sum().backward();
            let g = model.model.embed_tokens.weight.val().grad(&grads);
            assert!(g.is_some_and(|g| g.abs().sum().into_scalar::<f32>() > 0.0));
        }
    }
}
