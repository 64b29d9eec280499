//! Attention masks against a brute-force reference, the KV cache against a full forward pass,
//! and the MoE dispatch against a dense computation of the same routing.

use anvil_models::attention::{AttentionPattern, attention_mask};
use anvil_models::{LlamaConfig, MoeConfig, TokenBatch};
use burn::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The definition of each pattern, written out independently of `AttentionPattern::allows`.
fn brute_force(p: &str, q: usize, k: usize, seg: &[u16]) -> bool {
    if k > q || seg[q] != seg[k] {
        return false;
    }
    let visible: Vec<usize> = match p {
        "causal" => (0..=q).collect(),
        "sliding:5" => (q.saturating_sub(4)..=q).collect(),
        // 3 global tokens at the row start + a window of 4.
        "global:3:4" => {
            if q < 3 {
                (0..=q).collect()
            } else {
                let mut v: Vec<usize> = (0..3).collect();
                v.extend(q.saturating_sub(3)..=q);
                v
            }
        }
        // Every 3rd position going back, 4 of them (q, q-3, q-6, q-9).
        "dilated:4:3" => (0..4).filter_map(|i| q.checked_sub(3 * i)).collect(),
        _ => unreachable!(),
    };
    visible.contains(&k)
}

#[test]
fn masks_match_brute_force_with_document_boundaries() {
    let device = Device::flex();
    let (b, t) = (3, 23);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Packed rows: documents of random lengths, then padding (segment 0) at the end of some.
    let mut segs = Vec::new();
    for row in 0..b {
        let mut doc = 1u16;
        let pad_from = if row == 1 { 17 } else { t };
        for i in 0..t {
            if i >= pad_from {
                segs.push(0);
                continue;
            }
            if i > 0 && rng.random_bool(0.15) {
                doc += 1;
            }
            segs.push(doc);
        }
    }
    for spec in ["causal", "sliding:5", "global:3:4", "dilated:4:3"] {
        let pattern: AttentionPattern = spec.parse().unwrap();
        let mask = attention_mask(pattern, b, 0, t, t, Some(&segs), &device);
        let masked = mask.into_data().try_into_vec::<bool>().unwrap();
        for row in 0..b {
            let seg = &segs[row * t..(row + 1) * t];
            for q in 0..t {
                for k in 0..t {
                    let want = brute_force(spec, q, k, seg);
                    let got = !masked[(row * t + q) * t + k];
                    assert_eq!(got, want, "{spec}: row {row} q {q} k {k}");
                }
                // Never a fully masked query row (it would turn softmax into NaN).
                assert!(
                    !masked[(row * t + q) * t + q],
                    "{spec}: q {q} cannot see itself"
                );
            }
        }
    }
}

#[test]
fn decode_masks_offset_queries_like_the_full_mask() {
    let device = Device::flex();
    let pattern: AttentionPattern = "sliding:4".parse().unwrap();
    let full = attention_mask(pattern, 1, 0, 10, 10, None, &device)
        .into_data()
        .try_into_vec::<bool>()
        .unwrap();
    // The last 3 queries against all 10 keys, as a KV-cached step sees them.
    let tail = attention_mask(pattern, 1, 7, 3, 10, None, &device)
        .into_data()
        .try_into_vec::<bool>()
        .unwrap();
    assert_eq!(&full[70..], &tail[..]);
}

#[test]
fn pattern_specs_parse_and_reject_nonsense() {
    assert_eq!(
        "sliding:64"
            .parse::<AttentionPattern>()
            .unwrap()
            .to_string(),
        "sliding:64"
    );
    for bad in [
        "sliding",
        "sliding:0",
        "global:4",
        "dilated:4:0",
        "ring:3",
        "sliding:x",
    ] {
        assert!(bad.parse::<AttentionPattern>().is_err(), "{bad}");
    }
}

fn tiny(moe: Option<MoeConfig>, attention: &[&str]) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 97,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 48,
        max_seq_len: 64,
        attention: attention.iter().map(|s| s.to_string()).collect(),
        moe,
        ..LlamaConfig::default()
    }
}

fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() {
    let device = Device::flex();
    for attention in [&["causal"][..], &["sliding:3", "dilated:2:2"][..]] {
        device.seed(3);
        let model = tiny(None, attention).init(&device);
        let ids: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 97).collect();
        let full = model.logits(&ids, 1, 0, None);
        // Prefill 5 tokens, then one at a time.
        let mut caches = model.new_caches();
        let mut parts = vec![model.logits(&ids[..5], 1, 0, Some(&mut caches))];
        for i in 5..12 {
            parts.push(model.logits(&ids[i..i + 1], 1, i, Some(&mut caches)));
        }
        let stepped = Tensor::cat(parts, 1);
        let d = max_diff(full, stepped);
        assert!(d < 1e-5, "{attention:?}: cached decoding differs by {d}");
    }
}

#[test]
fn moe_dispatch_matches_dense_masked_reference() {
    let device = Device::flex();
    for (top_k, n_shared) in [(1, 0), (2, 0), (2, 1), (3, 0)] {
        device.seed(11);
        let moe = MoeConfig {
            n_experts: 5,
            top_k,
            n_shared,
            d_expert: 24,
            ..MoeConfig::default()
        };
        let layer = moe.init(32, 48, 0.2, &device);
        let x = Tensor::<3>::random(
            [3, 9, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (fast, stats) = layer.forward(x.clone());
        let dense = layer.forward_dense_reference(x);
        let d = max_diff(fast, dense);
        assert!(
            d < 1e-5,
            "top_k {top_k}, shared {n_shared}: dispatch differs by {d}"
        );
        let total: f32 = stats.load.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "loads sum to {total}");
        // With 27 tokens and 5 experts, not every expert takes every token: dispatch is sparse.
        assert!(stats.load.iter().all(|&f| f < 1.0));
    }
}

#[test]
fn moe_model_trains_with_aux_losses() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = tiny(
        Some(MoeConfig {
            n_experts: 4,
            top_k: 2,
            ..MoeConfig::default()
        }),
        &["causal"],
    )
    .init(&device);
    let batch = TokenBatch {
        input_ids: (0..2 * 16).map(|i| (i * 5 % 97) as u32).collect(),
        segment_ids: Some(vec![1; 32]),
        loss_mask: None,
        batch: 2,
        seq_len: 16,
        tree: None,
        position_targets: None,
    };
    let out = model.loss(&batch);
    assert_eq!(out.n_targets, 2 * 15);
    let aux = out.aux_loss.expect("MoE adds auxiliary losses");
    // Balance term ≥ α (equality at perfect balance) for each of the 2 layers.
    let aux_v = aux.clone().into_scalar::<f32>();
    assert!(aux_v >= 2.0 * 1e-2 * 0.99, "aux loss {aux_v}");
    assert_eq!(out.expert_load.len(), 2);
    let grads = (out.nll_sum + aux).backward();
    let router = &model.model.layers[0].moe.as_ref().unwrap().gate.weight;
    let g = router
        .val()
        .grad(&grads)
        .expect("the router gets a gradient");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
}
