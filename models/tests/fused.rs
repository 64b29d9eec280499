//! Each fused operation against the Burn tensor ops it replaces: same outputs and same gradients
//! (through autodiff, with a non-trivial upstream gradient) to float rounding.

use anvil_models::blocks::Rope;
use anvil_models::fused;
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor, TensorData};

fn device() -> Device {
    let d = Device::flex().autodiff();
    d.seed(7);
    d
}

fn rand<const D: usize>(shape: [usize; D], d: &Device) -> Tensor<D> {
    rand_std(shape, 1.0, d)
}

fn rand_std<const D: usize>(shape: [usize; D], std: f64, d: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, std), d).require_grad()
}

fn close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.into_data().try_into_vec::<f32>().unwrap();
    let b = b.into_data().try_into_vec::<f32>().unwrap();
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= tol * scale,
        "{what}: max |Δ| = {diff:e} (scale {scale})"
    );
}

/// Backward passes of `Σ a · r` and `Σ b · r` for one random `r`, so every output element gets
/// its own upstream gradient, the same on both sides.
fn backward_both<const D: usize>(a: Tensor<D>, b: Tensor<D>, d: &Device) -> (Gradients, Gradients) {
    let r = Tensor::<D>::random(a.dims(), Distribution::Normal(0.0, 1.0), d);
    ((a * r.clone()).sum().backward(), (b * r).sum().backward())
}

#[test]
fn rms_norm_matches_composed_ops() {
    let d = device();
    let (x, w) = (rand([3, 5, 64], &d), rand([64], &d));
    let eps = 1e-5;
    let fused_out = fused::rms_norm(x.clone(), w.clone(), eps);
    let rms = (x.clone().square().mean_dim(2) + eps).sqrt();
    let plain_out = x.clone() / rms * w.clone().unsqueeze::<3>();
    close("rms_norm", fused_out.clone(), plain_out.clone(), 1e-5);
    let (g1, g2) = backward_both(fused_out, plain_out, &d);
    close(
        "rms_norm dx",
        x.grad(&g1).unwrap(),
        x.grad(&g2).unwrap(),
        1e-5,
    );
    close(
        "rms_norm dw",
        w.grad(&g1).unwrap(),
        w.grad(&g2).unwrap(),
        1e-5,
    );
}

#[test]
fn swiglu_matches_composed_ops() {
    let d = device();
    // Large gates too: the exp must saturate the same way silu's does.
    let (g, u) = (rand_std([4, 7, 96], 6.0, &d), rand([4, 7, 96], &d));
    let fused_out = fused::swiglu(g.clone(), u.clone());
    let plain_out = silu(g.clone()) * u.clone();
    close("swiglu", fused_out.clone(), plain_out.clone(), 1e-6);
    let (g1, g2) = backward_both(fused_out, plain_out, &d);
    close(
        "swiglu dup",
        u.grad(&g1).unwrap(),
        u.grad(&g2).unwrap(),
        1e-6,
    );
    close(
        "swiglu dgate",
        g.grad(&g1).unwrap(),
        g.grad(&g2).unwrap(),
        1e-5,
    );
}

#[test]
fn rope_matches_rotate_half_and_splits_heads() {
    let d = device();
    let (b, t, heads, hd) = (2, 9, 3, 16);
    let rope = Rope::new(hd, 10_000.0, Default::default());
    // Positions 5.. as when decoding after a cache.
    let (cos, sin) = rope.cos_sin(5, t, &d);
    let x = rand([b, t, heads * hd], &d);
    let fused_out = fused::rope(x.clone(), cos.clone(), sin.clone(), heads);
    let split = x.clone().reshape([b, t, heads, hd]).swap_dims(1, 2);
    let plain_out = Rope::apply(split, &cos, &sin);
    close("rope", fused_out.clone(), plain_out.clone(), 1e-6);
    let (g1, g2) = backward_both(fused_out, plain_out, &d);
    close("rope dx", x.grad(&g1).unwrap(), x.grad(&g2).unwrap(), 1e-6);
}

/// The LM head loss with an untied `[d, vocab]` head and with a tied embedding (`[vocab, d]`
/// transposed, a strided view), some rows not targets, and the loss scaled afterwards (as the
/// trainer divides by the step's target count).
#[test]
fn lm_head_nll_matches_log_softmax_gather() {
    let d = device();
    let (rows, dm, vocab) = (70, 32, 300);
    let h = rand([rows, dm], &d);
    let head = rand_std([dm, vocab], 0.3, &d);
    let embed = rand([vocab, dm], &d);
    let targets: Vec<i64> = (0..rows as i64)
        .map(|i| {
            if i % 9 == 8 {
                -1
            } else {
                i * 37 % vocab as i64
            }
        })
        .collect();
    for tied in [false, true] {
        // A backward pass consumes the graph it walks: each loss gets its own transpose.
        let (name, leaf) = if tied {
            ("tied", embed.clone())
        } else {
            ("untied", head.clone())
        };
        let w = || {
            if tied {
                embed.clone().transpose()
            } else {
                head.clone()
            }
        };
        let t = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [rows]), &d);
        let fused_loss = fused::lm_head_nll(h.clone(), w(), t) * 0.37;

        let logp = log_softmax(h.clone().matmul(w()), 1);
        let safe: Vec<i64> = targets.iter().map(|&t| t.max(0)).collect();
        let mask: Vec<f32> = targets.iter().map(|&t| (t >= 0) as u8 as f32).collect();
        let tt = Tensor::<2, Int>::from_data(TensorData::new(safe, [rows, 1]), &d);
        let m = Tensor::<2>::from_data(TensorData::new(mask, [rows, 1]), &d);
        let plain_loss = (logp.gather(1, tt) * m).sum().neg() * 0.37;
        close(name, fused_loss.clone(), plain_loss.clone(), 1e-5);

        let g1 = fused_loss.backward();
        let g2 = plain_loss.backward();
        close(
            &format!("{name} dh"),
            h.grad(&g1).unwrap(),
            h.grad(&g2).unwrap(),
            1e-5,
        );
        let (a, b) = (leaf.grad(&g1).unwrap(), leaf.grad(&g2).unwrap());
        close(&format!("{name} dhead"), a, b, 1e-5);
    }
}

/// Without autodiff (inference, validation) the same numbers come out.
#[test]
fn fused_ops_run_without_autodiff() {
    let d = Device::flex();
    let x = Tensor::<3>::random([2, 4, 32], Distribution::Normal(0.0, 1.0), &d);
    let w = Tensor::<1>::ones([32], &d);
    let out = fused::rms_norm(x.clone(), w, 1e-6);
    let rms = (x.clone().square().mean_dim(2) + 1e-6).sqrt();
    close("rms_norm inference", out, x / rms, 1e-5);
    assert!(fused::enabled(&d) && fused::enabled(&d.clone().autodiff()));
}

/// Grouped-query attention over packed documents, against Burn's attention on expanded
/// keys/values and mask: outputs and the gradients of q, k and v.
#[test]
fn attention_matches_burn_attention() {
    use anvil_models::attention::{AttentionPattern, attention_mask};
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    let d = device();
    let (b, h, kvh, t, hd) = (2, 4, 2, 100, 16);
    let segments: Vec<u16> = (0..b * t).map(|i| if i % t < 37 { 1 } else { 2 }).collect();
    for pattern in ["causal", "sliding:20", "global:3:10", "dilated:8:3"] {
        let pattern: AttentionPattern = pattern.parse().unwrap();
        let mask = attention_mask(pattern, b, 0, t, t, Some(&segments), &d);
        let (q, k, v) = (
            rand([b, h, t, hd], &d),
            rand([b, kvh, t, hd], &d),
            rand([b, kvh, t, hd], &d),
        );
        let fused_out = fused::attention(q.clone(), k.clone(), v.clone(), mask.clone());
        let group = h / kvh;
        let expand = |y: Tensor<4>| {
            y.unsqueeze_dim::<5>(2)
                .expand([b, kvh, group, t, hd])
                .reshape([b, h, t, hd])
        };
        let plain_out = attention(
            q.clone(),
            expand(k.clone()),
            expand(v.clone()),
            Some(mask.expand([b, h, t, t])),
            None,
            AttentionModuleOptions::default(),
        );
        close(
            &format!("{pattern} out"),
            fused_out.clone(),
            plain_out.clone(),
            1e-5,
        );
        let (g1, g2) = backward_both(fused_out, plain_out, &d);
        for (name, x) in [("dq", &q), ("dk", &k), ("dv", &v)] {
            let (a, e) = (x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
            close(&format!("{pattern} {name}"), a, e, 1e-5);
        }
    }
}

#[test]
fn linear_matches_matmul() {
    let d = device();
    let (x, w) = (rand([3, 11, 24], &d), rand([24, 40], &d));
    let fused_out = fused::linear(x.clone(), w.clone());
    let plain_out = x.clone().matmul(w.clone().unsqueeze::<3>());
    close("linear", fused_out.clone(), plain_out.clone(), 1e-5);
    let (g1, g2) = backward_both(fused_out, plain_out, &d);
    close(
        "linear dx",
        x.grad(&g1).unwrap(),
        x.grad(&g2).unwrap(),
        1e-5,
    );
    close(
        "linear dw",
        w.grad(&g1).unwrap(),
        w.grad(&g2).unwrap(),
        1e-5,
    );
}

/// A mask shared by the whole batch (`[1, 1, seq, keys]`) is broadcast, in training as in
/// inference: the same output as the same mask repeated per row.
#[test]
fn attention_broadcasts_a_batch_shared_mask() {
    use anvil_models::attention::{AttentionPattern, attention_mask};
    let d = device();
    let (b, h, t, hd) = (3, 2, 20, 8);
    let one = attention_mask(AttentionPattern::Causal, 1, 0, t, t, None, &d);
    let all = attention_mask(AttentionPattern::Causal, b, 0, t, t, None, &d);
    let (q, k, v) = (
        rand([b, h, t, hd], &d),
        rand([b, h, t, hd], &d),
        rand([b, h, t, hd], &d),
    );
    let shared = fused::attention(q.clone(), k.clone(), v.clone(), one);
    let per_row = fused::attention(q, k, v, all);
    close("broadcast mask", shared, per_row, 0.0);
}
