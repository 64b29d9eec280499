//! Every kernel gives the same bits whichever instruction set it was built for (plain x86-64,
//! AVX2+FMA, AVX-512): the code is written once, without fused multiply-adds or reassociation,
//! so the compiler may only vectorize it, never change its arithmetic. This machine runs the
//! levels it has; the others are a CPU away. One test in its own binary, as it switches the
//! level for the process.

use anvil_models::kernels::{
    self, AdamWStep, MatRef, RopeShape, SimdLevel,
    attention::{self, Heads},
};

fn data(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 2_654_435_761 + seed * 97) % 10_007) as f32 / 10_007.0 - 0.5)
        .map(|x| x * scale)
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything the kernels compute on fixed inputs, as bits.
fn run_all() -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    // exp over its whole range, NaN and infinities included.
    let xs: Vec<f32> = (-1000..1000)
        .map(|i| i as f32 * 0.0937)
        .chain([f32::NAN, f32::INFINITY, f32::NEG_INFINITY])
        .collect();
    out.push(bits(
        &xs.iter().map(|&x| kernels::exp(x)).collect::<Vec<_>>(),
    ));

    let (rows, d, vocab) = (33, 24, 301);
    let targets: Vec<i64> = (0..rows as i64)
        .map(|i| if i % 7 == 6 { -1 } else { i * 13 % 301 })
        .collect();
    let mut logits = data(rows * vocab, 1, 30.0);
    let losses = kernels::cross_entropy(&mut logits, vocab, &targets, true);
    out.extend([bits(&losses), bits(&logits)]);

    let (h, w) = (data(rows * d, 2, 2.0), data(d * vocab, 3, 0.5));
    let lce = kernels::linear_cross_entropy(
        MatRef::dense(&h, rows, d),
        MatRef::dense(&w, d, vocab),
        &targets,
        kernels::CeGrads::Both,
    );
    let (dh, dw) = (
        lce.d_hidden.expect("asked for"),
        lce.d_head.expect("asked for"),
    );
    out.extend([bits(&lce.losses), bits(&dh), bits(&dw)]);

    let (g, u, dy) = (data(5000, 4, 12.0), data(5000, 5, 2.0), data(5000, 6, 1.0));
    out.push(bits(&kernels::swiglu(&g, &u)));
    let (dg, du) = kernels::swiglu_backward(&g, &u, &dy);
    out.extend([bits(&dg), bits(&du)]);

    let (x, nw) = (data(40 * 64, 7, 3.0), data(64, 8, 1.0));
    let (y, rstd) = kernels::rms_norm(&x, &nw, 1e-5);
    let (dx, dnw) = kernels::rms_norm_backward(&x, &nw, &rstd, &data(40 * 64, 9, 1.0));
    out.extend([bits(&y), bits(&rstd), bits(&dx), bits(&dnw)]);

    let shape = RopeShape {
        batch: 2,
        seq: 9,
        heads: 3,
        head_dim: 16,
    };
    let (cos, sin) = (data(9 * 16, 10, 2.0), data(9 * 16, 11, 2.0));
    let xr = data(2 * 9 * 48, 12, 1.0);
    out.push(bits(&kernels::rope(&xr, &cos, &sin, shape)));
    out.push(bits(&kernels::rope_backward(&xr, &cos, &sin, shape)));

    let (mut p, mut m, mut v) = (
        data(3000, 13, 1.0),
        data(3000, 14, 0.01),
        data(3000, 15, 0.001),
    );
    let v_pos: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    v.copy_from_slice(&v_pos);
    let step = AdamWStep {
        decay: Some(0.999),
        beta1: 0.9,
        one_minus_beta1: 0.1,
        beta2: 0.95,
        one_minus_beta2: 0.05,
        sqrt_bias_correction2: 0.3,
        eps: 1e-8,
        step_size: 1e-3,
    };
    kernels::adamw(&mut p, &data(3000, 16, 1.0), &mut m, &mut v, step);
    out.extend([bits(&p), bits(&m), bits(&v)]);

    let (b, heads, kvh, t, hd) = (2, 4, 2, 70, 8);
    let mask: Vec<u8> = (0..b * t * t)
        .map(|i| {
            let (r, c) = ((i / t) % t, i % t);
            (c > r || (i / (t * t) == 1 && r - c >= 20)) as u8
        })
        .collect();
    let (q, k, vv) = (
        data(b * heads * t * hd, 17, 2.0),
        data(b * kvh * t * hd, 18, 2.0),
        data(b * kvh * t * hd, 19, 2.0),
    );
    let (qh, kh, vh) = (
        Heads::dense(&q, [b, heads, t, hd]),
        Heads::dense(&k, [b, kvh, t, hd]),
        Heads::dense(&vv, [b, kvh, t, hd]),
    );
    // With a bucketed bias too (the tree transformer's), as the kernels run it.
    let table = data(heads * 5, 21, 1.0);
    let ids: Vec<u16> = (0..b * t * t).map(|i| (i * 7 % 5) as u16).collect();
    let bias = attention::BucketBias {
        table: &table,
        n_buckets: 5,
        ids: &ids,
    };
    for bias in [None, Some(bias)] {
        let (o, probs, blocks) = attention::forward(qh, kh, vh, &mask, bias, 0.35);
        let d_out = data(o.len(), 20, 1.0);
        let g = attention::backward(
            qh,
            kh,
            vh,
            &probs,
            &blocks,
            bias,
            Heads::dense(&d_out, [b, heads, t, hd]),
            0.35,
        );
        out.extend([
            bits(&o),
            bits(&probs),
            bits(&g.dq),
            bits(&g.dk),
            bits(&g.dv),
        ]);
        out.extend(g.d_table.map(|d| bits(&d)));
    }
    out
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    let levels: Vec<SimdLevel> = [SimdLevel::Base, SimdLevel::V3, SimdLevel::V4]
        .into_iter()
        .filter(|&l| l <= kernels::detected_simd_level())
        .collect();
    kernels::force_simd_level(Some(SimdLevel::Base));
    let reference = run_all();
    for &level in &levels[1..] {
        kernels::force_simd_level(Some(level));
        let got = run_all();
        for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
            assert!(a == b, "output {i} differs between {level:?} and Base");
        }
    }
    kernels::force_simd_level(None);
    println!("compared {levels:?}");
}
