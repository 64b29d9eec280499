//! Masked softmax attention for training, forward and backward, one (batch, head) per task.
//!
//! Burn's attention under autodiff is a dozen tensor ops over `[batch, heads, seq, keys]` scores
//! (matmul, scale, mask fill, max, subtract, exp, sum, divide, matmul) and their backward ops.
//! Here each head's scores are computed, masked, normalized and used in place, block of rows by
//! block of rows, and only over the columns some row of the block may see: a causal mask skips
//! the upper triangle (over a third of the work at 256 positions), a sliding window everything
//! outside its band. The probabilities are kept for the backward pass, which is then four
//! products per block and no exp at all.

use super::{MatRef, exp, gemm_into, row_max};
use rayon::prelude::*;

/// Query rows per block: the unit over which masked-out columns are skipped.
const BLOCK: usize = 64;

/// An additive bias on the scores looked up per head from a small table: score `(b, h, r, c)`
/// gets `table[h · n_buckets + ids[(b · seq + r) · keys + c]]` (the tree transformer's
/// tree-relative bias). The `[batch, heads, seq, keys]` bias itself is never formed.
#[derive(Clone, Copy, Debug)]
pub struct BucketBias<'a> {
    /// `[heads, n_buckets]`.
    pub table: &'a [f32],
    pub n_buckets: usize,
    /// `[batch, seq, keys]`.
    pub ids: &'a [u16],
}

impl BucketBias<'_> {
    /// Adds head `h`'s bias to the block's scores `s` (rows `stride` apart).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        s: &mut [f32],
        stride: usize,
        b: usize,
        h: usize,
        blk: Block,
        seq: usize,
        keys: usize,
    ) {
        let table = &self.table[h * self.n_buckets..][..self.n_buckets];
        for r in blk.r0..blk.r1 {
            let ids = &self.ids[(b * seq + r) * keys + blk.c0..][..blk.c1 - blk.c0];
            let row = &mut s[(r - blk.r0) * stride..][..ids.len()];
            for (v, &id) in row.iter_mut().zip(ids) {
                *v += table[id as usize];
            }
        }
    }

    /// Adds the block's score gradients `ds` (rows `stride` apart) to head `h`'s table rows of
    /// `d_table`.
    #[allow(clippy::too_many_arguments)]
    fn accumulate(
        &self,
        d_table: &mut [f32],
        ds: &[f32],
        stride: usize,
        b: usize,
        blk: Block,
        seq: usize,
        keys: usize,
    ) {
        for r in blk.r0..blk.r1 {
            let ids = &self.ids[(b * seq + r) * keys + blk.c0..][..blk.c1 - blk.c0];
            let row = &ds[(r - blk.r0) * stride..][..ids.len()];
            for (&g, &id) in row.iter().zip(ids) {
                d_table[id as usize] += g;
            }
        }
    }
}

/// A `[batch, heads, seq, head_dim]` tensor's elements with its strides (any layout).
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub dims: [usize; 4],
    pub strides: [isize; 4],
}

impl<'a> Heads<'a> {
    pub fn dense(data: &'a [f32], dims: [usize; 4]) -> Self {
        let [_, h, t, d] = dims;
        let strides = [(h * t * d) as isize, (t * d) as isize, d as isize, 1];
        Self {
            data,
            offset: 0,
            dims,
            strides,
        }
    }

    /// Head `h` of batch row `b` as a `[seq, head_dim]` matrix.
    fn head(&self, b: usize, h: usize) -> MatRef<'a> {
        let off =
            self.offset as isize + b as isize * self.strides[0] + h as isize * self.strides[1];
        MatRef {
            data: self.data,
            offset: off as usize,
            rows: self.dims[2],
            cols: self.dims[3],
            row_stride: self.strides[2],
            col_stride: self.strides[3],
        }
    }
}

/// A block of query rows `r0..r1` and the key columns `c0..c1` any of them may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
}

impl Block {
    /// This block's probabilities in one head's `[seq, keys]` matrix `p`.
    fn probs(self, p: &[f32], keys: usize) -> MatRef<'_> {
        MatRef {
            data: p,
            offset: self.r0 * keys + self.c0,
            rows: self.r1 - self.r0,
            cols: self.c1 - self.c0,
            row_stride: keys as isize,
            col_stride: 1,
        }
    }
}

/// The blocks of every batch row, from its `[seq, keys]` mask (non-zero = masked out).
pub fn blocks(mask: &[u8], batch: usize, seq: usize, keys: usize) -> Vec<Vec<Block>> {
    assert_eq!(mask.len(), batch * seq * keys, "mask is [batch, seq, keys]");
    (0..batch)
        .map(|b| {
            (0..seq)
                .step_by(BLOCK)
                .map(|r0| {
                    let r1 = (r0 + BLOCK).min(seq);
                    let (mut c0, mut c1) = (keys, 0);
                    for r in r0..r1 {
                        let row = &mask[(b * seq + r) * keys..][..keys];
                        if let Some(first) = row.iter().position(|&m| m == 0) {
                            let last = row.iter().rposition(|&m| m == 0).expect("one exists");
                            c0 = c0.min(first);
                            c1 = c1.max(last + 1);
                        }
                    }
                    if c1 <= c0 {
                        (c0, c1) = (0, 0);
                    }
                    Block { r0, r1, c0, c1 }
                })
                .collect()
        })
        .collect()
}

multiversion! {
    /// Softmax of each row of `s` (`rows` rows of `width` scores, `stride` apart) where `mask`
    /// (same layout, `mask_stride` apart) is zero; masked entries and fully masked rows get 0.
    fn masked_softmax(s: &mut [f32], stride: usize, width: usize, rows: usize, mask: &[u8], mask_stride: usize) {
        const L: usize = 16;
        for r in 0..rows {
            let row = &mut s[r * stride..][..width];
            let m = &mask[r * mask_stride..][..width];
            for (v, &mk) in row.iter_mut().zip(m) {
                *v = if mk != 0 { f32::NEG_INFINITY } else { *v };
            }
            let max = row_max(row);
            if max == f32::NEG_INFINITY {
                // Nothing visible gives 0; visible scores that are all NaN stay NaN.
                let none_visible = m.iter().all(|&mk| mk != 0);
                row.fill(if none_visible { 0.0 } else { f32::NAN });
                continue;
            }
            let mut acc = [0f32; L];
            let mut rest = 0f32;
            let mut chunks = row.chunks_exact_mut(L);
            for c in &mut chunks {
                for i in 0..L {
                    let e = if c[i] == f32::NEG_INFINITY { 0.0 } else { exp(c[i] - max) };
                    c[i] = e;
                    acc[i] += e;
                }
            }
            for v in chunks.into_remainder() {
                *v = if *v == f32::NEG_INFINITY { 0.0 } else { exp(*v - max) };
                rest += *v;
            }
            let inv = 1.0 / (acc.iter().sum::<f32>() + rest);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

multiversion! {
    /// `dS = P ⊙ (dP − rowsum(P ⊙ dP))` in place of `dp`, row by row (the softmax backward).
    fn softmax_backward(p: &[f32], p_stride: usize, dp: &mut [f32], dp_stride: usize, width: usize, rows: usize) {
        for r in 0..rows {
            let pr = &p[r * p_stride..][..width];
            let dr = &mut dp[r * dp_stride..][..width];
            let mut acc = [0f32; 16];
            let mut pc = pr.chunks_exact(16);
            let mut dc = dr.chunks_exact(16);
            for (a, b) in (&mut pc).zip(&mut dc) {
                for i in 0..16 {
                    acc[i] += a[i] * b[i];
                }
            }
            let rest: f32 = pc.remainder().iter().zip(dc.remainder()).map(|(a, b)| a * b).sum();
            let dot = acc.iter().sum::<f32>() + rest;
            for (d, &pv) in dr.iter_mut().zip(pr) {
                *d = pv * (*d - dot);
            }
        }
    }
}

/// The forward pass: returns the output `[batch, heads, seq, head_dim]` (dense) and the
/// attention probabilities `[batch, heads, seq, keys]` (0 where masked), which the backward
/// needs. Query head `h` reads key/value head `h / (heads / kv_heads)` (grouped-query).
pub fn forward(
    q: Heads,
    k: Heads,
    v: Heads,
    mask: &[u8],
    bias: Option<BucketBias>,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<Vec<Block>>) {
    let [batch, heads, seq, hd] = q.dims;
    let [kb, kv_heads, keys, khd] = k.dims;
    assert!(
        kb == batch && khd == hd && v.dims == k.dims,
        "attention: q/k/v shapes"
    );
    assert!(
        kv_heads > 0 && heads % kv_heads == 0,
        "attention: kv heads divide heads"
    );
    let group = heads / kv_heads;
    let blocks = blocks(mask, batch, seq, keys);
    let mut out = vec![0f32; batch * heads * seq * hd];
    let mut probs = vec![0f32; batch * heads * seq * keys];
    if out.is_empty() || probs.is_empty() {
        return (out, probs, blocks); // no query, or no key to see: zeros
    }
    out.par_chunks_mut(seq * hd)
        .zip(probs.par_chunks_mut(seq * keys))
        .enumerate()
        .for_each(|(bh, (o, p))| {
            let (b, h) = (bh / heads, bh % heads);
            let (qm, km, vm) = (q.head(b, h), k.head(b, h / group), v.head(b, h / group));
            let mask_b = &mask[b * seq * keys..][..seq * keys];
            for blk in &blocks[b] {
                let (n, w) = (blk.r1 - blk.r0, blk.c1 - blk.c0);
                if w == 0 {
                    continue; // no key visible: probabilities and output stay 0
                }
                let s = &mut p[blk.r0 * keys + blk.c0..];
                gemm_into(
                    s,
                    keys,
                    false,
                    qm.rows(blk.r0, n),
                    km.rows(blk.c0, w).t(),
                    scale,
                    false,
                );
                if let Some(bias) = &bias {
                    bias.add(s, keys, b, h, *blk, seq, keys);
                }
                masked_softmax(s, keys, w, n, &mask_b[blk.r0 * keys + blk.c0..], keys);
                let pm = blk.probs(p, keys);
                gemm_into(
                    &mut o[blk.r0 * hd..],
                    hd,
                    false,
                    pm,
                    vm.rows(blk.c0, w),
                    1.0,
                    false,
                );
            }
        });
    (out, probs, blocks)
}

/// The gradients of one attention: `q`, `k`, `v` (dense, in their logical shapes) and, with a
/// bias, its table's (`[heads, n_buckets]`).
pub struct AttentionGrads {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
    pub d_table: Option<Vec<f32>>,
}

/// The backward pass: the gradients from the output's gradient `d_out` (any layout) and what
/// [`forward`] kept (`bias`: the one it added).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: Heads,
    k: Heads,
    v: Heads,
    probs: &[f32],
    blocks: &[Vec<Block>],
    bias: Option<BucketBias>,
    d_out: Heads,
    scale: f32,
) -> AttentionGrads {
    let [batch, heads, seq, hd] = q.dims;
    let [_, kv_heads, keys, _] = k.dims;
    let group = heads / kv_heads;
    let mut dq = vec![0f32; batch * heads * seq * hd];
    let mut dk = vec![0f32; batch * kv_heads * keys * hd];
    let mut dv = vec![0f32; batch * kv_heads * keys * hd];
    // Per batch row and head, that head's table gradient; summed over rows at the end.
    let nb = bias.map_or(0, |b| b.n_buckets);
    let mut d_tables = vec![0f32; batch * heads * nb];
    let grads = |dq, dk, dv, d_tables: Vec<f32>| AttentionGrads {
        dq,
        dk,
        dv,
        d_table: bias.map(|_| {
            let mut t = vec![0f32; heads * nb];
            for part in d_tables.chunks_exact(heads * nb) {
                t.iter_mut().zip(part).for_each(|(a, b)| *a += b);
            }
            t
        }),
    };
    if dq.is_empty() || dk.is_empty() {
        return grads(dq, dk, dv, d_tables);
    }
    // One task per (batch, kv head): it owns that head's dk/dv, its group's dq and table rows.
    let table_chunk = (group * nb).max(1);
    if d_tables.is_empty() {
        d_tables = vec![0f32; batch * kv_heads];
    }
    dq.par_chunks_mut(group * seq * hd)
        .zip(dk.par_chunks_mut(keys * hd))
        .zip(dv.par_chunks_mut(keys * hd))
        .zip(d_tables.par_chunks_mut(table_chunk))
        .enumerate()
        .for_each(|(bg, (((dq, dk), dv), d_tab))| {
            let (b, g) = (bg / kv_heads, bg % kv_heads);
            let (km, vm) = (k.head(b, g), v.head(b, g));
            let mut ds = vec![0f32; BLOCK * keys];
            for j in 0..group {
                let h = g * group + j;
                let (qm, dom) = (q.head(b, h), d_out.head(b, h));
                let p = &probs[(b * heads + h) * seq * keys..][..seq * keys];
                let dq = &mut dq[j * seq * hd..][..seq * hd];
                for blk in &blocks[b] {
                    let (n, w) = (blk.r1 - blk.r0, blk.c1 - blk.c0);
                    if w == 0 {
                        continue;
                    }
                    let pm = blk.probs(p, keys);
                    let do_blk = dom.rows(blk.r0, n);
                    // dV[c] += Pᵀ · dO
                    gemm_into(&mut dv[blk.c0 * hd..], hd, true, pm.t(), do_blk, 1.0, false);
                    // dP = dO · Vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP))
                    gemm_into(
                        &mut ds,
                        w,
                        false,
                        do_blk,
                        vm.rows(blk.c0, w).t(),
                        1.0,
                        false,
                    );
                    softmax_backward(&p[blk.r0 * keys + blk.c0..], keys, &mut ds, w, w, n);
                    if let Some(bias) = &bias {
                        bias.accumulate(&mut d_tab[j * nb..][..nb], &ds, w, b, *blk, seq, keys);
                    }
                    let dsm = MatRef {
                        data: &ds,
                        offset: 0,
                        rows: n,
                        cols: w,
                        row_stride: w as isize,
                        col_stride: 1,
                    };
                    // dQ = scale · dS · K ;  dK[c] += scale · dSᵀ · Q
                    gemm_into(
                        &mut dq[blk.r0 * hd..],
                        hd,
                        false,
                        dsm,
                        km.rows(blk.c0, w),
                        scale,
                        false,
                    );
                    gemm_into(
                        &mut dk[blk.c0 * hd..],
                        hd,
                        true,
                        dsm.t(),
                        qm.rows(blk.r0, n),
                        scale,
                        false,
                    );
                }
            }
        });
    grads(dq, dk, dv, d_tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64 straight from the definition, with the mask applied per element.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: &[u8],
        dims: [usize; 4],
        kvh: usize,
        keys: usize,
        scale: f64,
    ) -> Vec<f64> {
        let [b, h, t, d] = dims;
        let group = h / kvh;
        let mut out = vec![0f64; b * h * t * d];
        for bi in 0..b {
            for hi in 0..h {
                let g = hi / group;
                for r in 0..t {
                    let qr = &q[((bi * h + hi) * t + r) * d..][..d];
                    let mut s: Vec<Option<f64>> = (0..keys)
                        .map(|c| {
                            (mask[(bi * t + r) * keys + c] == 0).then(|| {
                                let kr = &k[((bi * kvh + g) * keys + c) * d..][..d];
                                qr.iter()
                                    .zip(kr)
                                    .map(|(a, b)| *a as f64 * *b as f64)
                                    .sum::<f64>()
                                    * scale
                            })
                        })
                        .collect();
                    let max = s
                        .iter()
                        .flatten()
                        .cloned()
                        .fold(f64::NEG_INFINITY, f64::max);
                    if max == f64::NEG_INFINITY {
                        continue;
                    }
                    for x in s.iter_mut().flatten() {
                        *x = (*x - max).exp();
                    }
                    let sum: f64 = s.iter().flatten().sum();
                    for (c, x) in s.iter().enumerate() {
                        if let Some(x) = x {
                            let vr = &v[((bi * kvh + g) * keys + c) * d..][..d];
                            for (o, vv) in
                                out[((bi * h + hi) * t + r) * d..][..d].iter_mut().zip(vr)
                            {
                                *o += x / sum * *vv as f64;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_definition_under_causal_document_and_window_masks() {
        let (b, h, kvh, t, d) = (2, 4, 2, 150, 8);
        let keys = t;
        let make = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i + seed) * 2654435761usize % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        let (q, k, v) = (
            make(b * h * t * d, 1),
            make(b * kvh * keys * d, 2),
            make(b * kvh * keys * d, 3),
        );
        // Row 0: causal with documents of 70 and 80; row 1: a sliding window of 40 positions
        // with the first 3 rows seeing nothing (padding).
        let mut mask = vec![1u8; b * t * keys];
        for r in 0..t {
            for c in 0..=r {
                let same_doc = (r < 70) == (c < 70);
                mask[r * keys + c] = (!same_doc) as u8;
                mask[(t + r) * keys + c] = !(r >= 3 && c >= 3 && r - c < 40) as u8;
            }
        }
        let scale = 1.0 / (d as f32).sqrt();
        let (out, probs, blocks) = forward(
            Heads::dense(&q, [b, h, t, d]),
            Heads::dense(&k, [b, kvh, keys, d]),
            Heads::dense(&v, [b, kvh, keys, d]),
            &mask,
            None,
            scale,
        );
        let want = reference(&q, &k, &v, &mask, [b, h, t, d], kvh, keys, scale as f64);
        for (a, w) in out.iter().zip(&want) {
            assert!((*a as f64 - w).abs() < 1e-5, "{a} vs {w}");
        }
        // Probabilities are 0 where masked, and rows sum to 1 (or 0 when nothing is visible).
        for bi in 0..b {
            for hi in 0..h {
                for r in 0..t {
                    let row = &probs[((bi * h + hi) * t + r) * keys..][..keys];
                    let sum: f32 = row.iter().sum();
                    let visible = mask[(bi * t + r) * keys..][..keys].iter().any(|&m| m == 0);
                    assert!((sum - visible as u8 as f32).abs() < 1e-5);
                    for (c, &p) in row.iter().enumerate() {
                        if mask[(bi * t + r) * keys + c] != 0 {
                            assert_eq!(p, 0.0);
                        }
                    }
                }
            }
        }
        // The window's blocks skip columns: block 2 (rows 128..150) sees keys 89..150 only.
        assert_eq!(
            blocks[1][2],
            Block {
                r0: 128,
                r1: 150,
                c0: 89,
                c1: 150
            }
        );
    }
}
