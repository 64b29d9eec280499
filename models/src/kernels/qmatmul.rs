//! Products with a matrix kept in llama.cpp's Q8_0 / Q4_0 blocks: the frozen base of a QLoRA
//! run and the projections of a quantized checkpoint stay quantized in memory, 4.2× / 7.1×
//! smaller than f32.
//!
//! - Forward, `y = x · Wᵀ`, for up to [`INT8_MAX_ROWS`] rows (decoding): the rows of `x` are
//!   quantized to Q8_0 on the fly (as llama.cpp does for its `vec_dot_q8_0_q8_0` /
//!   `q4_0_q8_0`), and each output is a sum over 32-value blocks of an int8 dot product times the
//!   two blocks' scales, the weight blocks read in place. The int8 dot is AVX-512 VNNI
//!   (`vpdpbusd`) where the CPU has it, AVX2 (`vpmaddubsw` + `vpmaddwd`) otherwise, plain Rust on
//!   anything else, chosen at run time.
//! - Forward for more rows (training batches, prefill) and backward (`dx = dy · W`): bands of `W`
//!   are dequantized into a bounded f32 scratch and multiplied with gemm, whose register-blocked
//!   kernel reuses each dequantized band for every row (measured faster than the int8 dot
//!   products from 16 rows up: docs/lora.md). No f32 copy of the whole matrix is ever held.
//!
//! Every output is summed by one task in a fixed order: results do not depend on scheduling.

use crate::quant::{GgmlType, QK, q8_0_block};
use half::f16;
use rayon::prelude::*;
use std::fmt;

/// A `[rows, cols]` matrix of Q8_0 or Q4_0 blocks, row-major, blocks along each row: ggml's
/// layout for a weight `[out, in]` (so `rows` = outputs, `cols` = inputs).
#[derive(Clone, PartialEq)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QuantMatrix({}, [{}, {}])",
            self.ty.name(),
            self.rows,
            self.cols
        )
    }
}

impl QuantMatrix {
    /// Quantizes `w`, given in Burn's `[d_in, d_out]` layout (the transpose of ggml's), to
    /// `ty` with rows of `d_in` values. `None` unless `ty` is Q8_0 or Q4_0 and `d_in` a
    /// multiple of 32 (llama.cpp's own rule for when a matrix can be block-quantized).
    pub fn quantize(w: &[f32], d_in: usize, d_out: usize, ty: GgmlType) -> Option<Self> {
        if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0) || d_in % QK != 0 {
            return None;
        }
        assert_eq!(w.len(), d_in * d_out, "quantize: weight size");
        let row_bytes = ty.bytes_for(d_in);
        let mut data = vec![0u8; row_bytes * d_out];
        data.par_chunks_mut(row_bytes)
            .enumerate()
            .for_each(|(j, out)| {
                let row: Vec<f32> = (0..d_in).map(|i| w[i * d_out + j]).collect();
                out.copy_from_slice(&ty.encode(&row));
            });
        Some(Self {
            ty,
            rows: d_out,
            cols: d_in,
            data,
        })
    }

    /// A matrix from ggml blocks as stored in a GGUF or quantized checkpoint (`rows` of `cols`
    /// values). `None` when the sizes disagree.
    pub fn from_blocks(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        let ok = matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0)
            && cols % QK == 0
            && rows.checked_mul(ty.bytes_for(cols)) == Some(data.len());
        ok.then_some(Self {
            ty,
            rows,
            cols,
            data,
        })
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// `[rows, cols]` = `[d_out, d_in]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The blocks, row-major.
    pub fn blocks(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.ty.bytes_for(self.cols)
    }

    /// Rows `start..start + out.len() / cols` as f32, row-major.
    pub fn dequantize_rows(&self, start: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        let n = out.len() / self.cols;
        let bytes = &self.data[start * rb..(start + n) * rb];
        let (bb, qk) = (self.ty.block_bytes(), QK);
        for (block, dst) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(qk)) {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            match self.ty {
                GgmlType::Q8_0 => {
                    for (o, &q) in dst.iter_mut().zip(&block[2..]) {
                        *o = q as i8 as f32 * d;
                    }
                }
                _ => {
                    let (lo, hi) = dst.split_at_mut(QK / 2);
                    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&block[2..]) {
                        *l = ((q & 0x0F) as i32 - 8) as f32 * d;
                        *h = ((q >> 4) as i32 - 8) as f32 * d;
                    }
                }
            }
        }
    }

    /// The whole matrix in Burn's `[d_in, d_out]` layout, f32 (for merging and exports).
    pub fn dequantize_in_out(&self) -> Vec<f32> {
        let mut rows = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut rows);
        let mut out = vec![0f32; rows.len()];
        for j in 0..self.rows {
            for i in 0..self.cols {
                out[i * self.rows + j] = rows[j * self.cols + i];
            }
        }
        out
    }
}

/// Rows of activations quantized to Q8_0: values and per-block scales.
struct QuantRows {
    q: Vec<i8>,
    d: Vec<f32>,
}

fn quantize_rows(x: &[f32], cols: usize) -> QuantRows {
    let blocks = x.len() / QK;
    let mut q = vec![0i8; x.len()];
    let mut d = vec![0f32; blocks];
    // ggml's reference rounding, as for the weights: one definition of Q8_0.
    q.par_chunks_mut(cols)
        .zip(d.par_chunks_mut(cols / QK))
        .zip(x.par_chunks(cols))
        .for_each(|((q, d), x)| {
            for ((q, d), x) in q
                .chunks_exact_mut(QK)
                .zip(d.iter_mut())
                .zip(x.chunks_exact(QK))
            {
                let b = q8_0_block(x);
                q.copy_from_slice(&b.q);
                *d = b.d.to_f32();
            }
        });
    QuantRows { q, d }
}

/// Up to this many rows of `x`, the forward pass runs the int8 dot products; above it, bands of
/// `W` are dequantized and multiplied with gemm. Measured on AVX-512 VNNI (`probe_qmatmul_speed`
/// in models/tests/qlora.rs, docs/lora.md): a dot product per output reads each weight block once
/// per row of `x`, so it wins while the weights' memory traffic dominates (decoding: one row per
/// sequence) and loses to gemm's register-blocked f32 kernel on training batches, where a band
/// of dequantized rows is reused by every row of `x`.
pub const INT8_MAX_ROWS: usize = 8;

/// Weight rows per parallel task of the int8 path.
const BAND: usize = 32;

/// Weight rows dequantized per gemm call: 256 rows of a 4096-wide matrix are 4 MiB of f32, a
/// bounded scratch whatever the matrix.
const GEMM_BAND: usize = 256;

/// `y = x · Wᵀ`: `x` is `[rows, w.cols]` row-major, the result `[rows, w.rows]`.
pub fn qmatmul(x: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f32> {
    assert_eq!(x.len(), rows * w.cols, "qmatmul: input size");
    if rows > INT8_MAX_ROWS {
        return qmatmul_gemm(x, rows, w);
    }
    qmatmul_int8(x, rows, w)
}

/// The int8 path: activations to Q8_0, one dot product over the blocks per output.
pub fn qmatmul_int8(x: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f32> {
    let (n_out, k) = (w.rows, w.cols);
    let xq = quantize_rows(x, k);
    let nb = k / QK;
    let rb = w.row_bytes();
    let level = dot_level();
    // One task per band of weight rows; each writes its columns of every output row.
    let bands: Vec<Vec<f32>> = (0..n_out.div_ceil(BAND))
        .into_par_iter()
        .map(|band| {
            let j0 = band * BAND;
            let n = BAND.min(n_out - j0);
            let mut out = vec![0f32; rows * n];
            for j in 0..n {
                let wr = &w.data[(j0 + j) * rb..(j0 + j + 1) * rb];
                for i in 0..rows {
                    let (xr, xd) = (&xq.q[i * k..(i + 1) * k], &xq.d[i * nb..(i + 1) * nb]);
                    out[i * n + j] = dot_row(level, w.ty, xr, xd, wr);
                }
            }
            out
        })
        .collect();
    let mut y = vec![0f32; rows * n_out];
    for (band, vals) in bands.iter().enumerate() {
        let j0 = band * BAND;
        let n = vals.len() / rows.max(1);
        for i in 0..rows {
            y[i * n_out + j0..i * n_out + j0 + n].copy_from_slice(&vals[i * n..(i + 1) * n]);
        }
    }
    y
}

/// The gemm path: bands of `W` dequantized into a bounded scratch, `y[:, band] = x · bandᵀ`.
pub fn qmatmul_gemm(x: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f32> {
    use super::MatRef;
    let (n_out, k) = (w.rows, w.cols);
    let mut y = vec![0f32; rows * n_out];
    let mut band = vec![0f32; GEMM_BAND.min(n_out) * k];
    for j0 in (0..n_out).step_by(GEMM_BAND) {
        let n = GEMM_BAND.min(n_out - j0);
        let band = &mut band[..n * k];
        w.dequantize_rows(j0, band);
        let (a, b) = (MatRef::dense(x, rows, k), MatRef::dense(band, n, k).t());
        super::gemm_into(&mut y[j0..], n_out, false, a, b, 1.0, true);
    }
    y
}

/// `dx = dy · W`: `dy` is `[rows, w.rows]`, the result `[rows, w.cols]`. The sum runs across
/// block rows, where int8 blocks do not line up: bands of `W` are dequantized and their
/// products accumulated in band order (deterministic).
pub fn qmatmul_backward(dy: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f32> {
    use super::MatRef;
    assert_eq!(dy.len(), rows * w.rows, "qmatmul_backward: gradient size");
    let (n_out, k) = (w.rows, w.cols);
    let mut dx = vec![0f32; rows * k];
    let mut band = vec![0f32; GEMM_BAND.min(n_out) * k];
    for j0 in (0..n_out).step_by(GEMM_BAND) {
        let n = GEMM_BAND.min(n_out - j0);
        let band = &mut band[..n * k];
        w.dequantize_rows(j0, band);
        // dy[:, j0..j0+n] as a strided view of dy.
        let a = MatRef {
            data: dy,
            offset: j0,
            rows,
            cols: n,
            row_stride: n_out as isize,
            col_stride: 1,
        };
        super::matmul(&mut dx, j0 > 0, a, MatRef::dense(band, n, k));
    }
    dx
}

/// `Σ_b xd[b] · d_b · Σ_{i in b} x[i] · w[i]` over the blocks of one activation row (Q8_0,
/// unpacked) and one weight row (ggml blocks, read in place).
fn dot_row(level: DotLevel, ty: GgmlType, x: &[i8], xd: &[f32], w: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        let q4 = ty == GgmlType::Q4_0;
        // SAFETY: `dot_level` only reports what the CPU has.
        match (level, q4) {
            (DotLevel::Vnni, false) => return unsafe { x86::dot_vnni::<false>(x, xd, w) },
            (DotLevel::Vnni, true) => return unsafe { x86::dot_vnni::<true>(x, xd, w) },
            (DotLevel::Avx2, false) => return unsafe { x86::dot_avx2::<false>(x, xd, w) },
            (DotLevel::Avx2, true) => return unsafe { x86::dot_avx2::<true>(x, xd, w) },
            (DotLevel::Scalar, _) => {}
        }
    }
    let _ = level;
    dot_scalar(ty, x, xd, w)
}

fn dot_scalar(ty: GgmlType, x: &[i8], xd: &[f32], w: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (b, (xb, wb)) in x
        .chunks_exact(QK)
        .zip(w.chunks_exact(ty.block_bytes()))
        .enumerate()
    {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let s: i32 = match ty {
            GgmlType::Q8_0 => xb
                .iter()
                .zip(&wb[2..])
                .map(|(&a, &c)| a as i32 * c as i8 as i32)
                .sum(),
            _ => wb[2..]
                .iter()
                .enumerate()
                .map(|(j, &c)| {
                    xb[j] as i32 * ((c & 0x0F) as i32 - 8)
                        + xb[j + QK / 2] as i32 * ((c >> 4) as i32 - 8)
                })
                .sum(),
        };
        sum += s as f32 * (xd[b] * d);
    }
    sum
}

/// Which int8 dot product runs: the best the CPU has, unless the SIMD level was forced lower
/// (tests hold every build to the scalar one).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DotLevel {
    Scalar,
    Avx2,
    Vnni,
}

pub fn dot_level() -> DotLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use super::SimdLevel;
        use std::sync::OnceLock;
        static FEATURES: OnceLock<(bool, bool)> = OnceLock::new();
        let (f16c, vnni) = *FEATURES.get_or_init(|| {
            (
                is_x86_feature_detected!("f16c"),
                is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"),
            )
        });
        match super::simd_level() {
            _ if !f16c => DotLevel::Scalar,
            SimdLevel::V4 if vnni => DotLevel::Vnni,
            SimdLevel::V4 | SimdLevel::V3 => DotLevel::Avx2,
            SimdLevel::Base => DotLevel::Scalar,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    DotLevel::Scalar
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::QK;
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 f32 lanes.
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// One f16 to f32 with F16C (the `half` crate checks the CPU on every call).
    #[inline(always)]
    unsafe fn f16_to_f32(bits: u16) -> f32 {
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))) }
    }

    /// Block `b` of a weight row as 32 signed bytes and its scale: Q8_0's values are stored as
    /// they are; Q4_0's 16 bytes hold values `j` (low nibble) and `j + 16` (high nibble), less 8.
    ///
    /// # Safety
    /// `w` must hold block `b` whole.
    #[inline(always)]
    unsafe fn weight_block<const Q4: bool>(w: &[u8], b: usize) -> (__m256i, f32) {
        unsafe {
            if Q4 {
                let p = w.as_ptr().add(b * (2 + QK / 2));
                let d = f16_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
                let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
                let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
                let nibbles = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
                (_mm256_sub_epi8(nibbles, _mm256_set1_epi8(8)), d)
            } else {
                let p = w.as_ptr().add(b * (2 + QK));
                let d = f16_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
                (_mm256_loadu_si256(p.add(2) as *const __m256i), d)
            }
        }
    }

    /// Both kernels multiply |x| (unsigned) by w with x's sign moved onto it, the form the
    /// u8 × i8 instructions take; Q8_0 values are within ±127, so |x| fits and no pair of
    /// products saturates `vpmaddubsw`'s i16. `block_dot` sums one block's 32 products into
    /// eight i32 lanes; the rest is shared.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C (the callers' `target_feature`s).
    #[inline(always)]
    unsafe fn dot<const Q4: bool>(
        x: &[i8],
        xd: &[f32],
        w: &[u8],
        block_dot: impl Fn(__m256i, __m256i) -> __m256i,
    ) -> f32 {
        let nb = x.len() / QK;
        let bb = if Q4 { 2 + QK / 2 } else { 2 + QK };
        assert!(w.len() >= nb * bb && xd.len() >= nb);
        // SAFETY: block b is inside both slices (asserted above); the features are the caller's.
        unsafe {
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let xv = _mm256_loadu_si256(x.as_ptr().add(b * QK) as *const __m256i);
                let (wv, d) = weight_block::<Q4>(w, b);
                let s = block_dot(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(xd[b] * d), acc);
            }
            hsum(acc)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub unsafe fn dot_vnni<const Q4: bool>(x: &[i8], xd: &[f32], w: &[u8]) -> f32 {
        // SAFETY: this function's features are the ones `dot` needs.
        unsafe {
            dot::<Q4>(x, xd, w, |ax, sw| {
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sw)
            })
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2<const Q4: bool>(x: &[i8], xd: &[f32], w: &[u8]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        // SAFETY: this function's features are the ones `dot` needs.
        unsafe {
            dot::<Q4>(x, xd, w, |ax, sw| {
                _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{SimdLevel, force_simd_level};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    /// `x · W` with `W` dequantized first, in f64: what the kernels must match.
    fn reference(x: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f64> {
        let [n, k] = w.shape();
        let mut wf = vec![0f32; n * k];
        w.dequantize_rows(0, &mut wf);
        let mut y = vec![0f64; rows * n];
        for i in 0..rows {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| x[i * k + t] as f64 * wf[j * k + t] as f64)
                    .sum();
            }
        }
        y
    }

    #[test]
    fn quantize_matches_the_ggml_row_encoding_and_dequantizes_back() {
        let (d_in, d_out) = (64, 5);
        let w = random(d_in * d_out, 1);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let q = QuantMatrix::quantize(&w, d_in, d_out, ty).unwrap();
            let row3: Vec<f32> = (0..d_in).map(|i| w[i * d_out + 3]).collect();
            let rb = ty.bytes_for(d_in);
            assert_eq!(&q.blocks()[3 * rb..4 * rb], &ty.encode(&row3)[..]);
            let back = q.dequantize_in_out();
            let want = ty.decode(&ty.encode(&row3));
            for i in 0..d_in {
                assert_eq!(back[i * d_out + 3], want[i]);
            }
        }
        assert!(QuantMatrix::quantize(&random(48 * 2, 2), 48, 2, GgmlType::Q8_0).is_none());
        assert!(QuantMatrix::from_blocks(GgmlType::Q4_0, 2, 64, vec![0; 71]).is_none());
    }

    /// The int8 product differs from dequantize-then-multiply only by the activations'
    /// rounding to Q8_0: at most 1/254 of each block's largest |x|, times Σ|w| of the block.
    #[test]
    fn forward_matches_dequantize_then_matmul_at_every_simd_level() {
        let (rows, k, n) = (7, 96, 300); // more than one band of each path
        let x = random(rows * k, 3);
        let w = random(k * n, 4);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let q = QuantMatrix::quantize(&w, k, n, ty).unwrap();
            let want = reference(&x, rows, &q);
            let mut wf = vec![0f32; n * k];
            q.dequantize_rows(0, &mut wf);
            let mut outs = Vec::new();
            for level in [SimdLevel::Base, SimdLevel::V3, SimdLevel::V4] {
                force_simd_level(Some(level));
                outs.push(qmatmul_int8(&x, rows, &q));
            }
            force_simd_level(None);
            // The gemm path multiplies the weights exactly (the activations stay f32).
            let gemm = qmatmul_gemm(&x, rows, &q);
            for (g, r) in gemm.iter().zip(&want) {
                assert!(
                    (*g as f64 - r).abs() <= 1e-5 * (1.0 + r.abs()),
                    "gemm path: {g} vs {r}"
                );
            }
            for i in 0..rows {
                for j in 0..n {
                    let bound: f64 = (0..k / QK)
                        .map(|b| {
                            let xs = &x[i * k + b * QK..i * k + (b + 1) * QK];
                            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                            let wsum: f64 = wf[j * k + b * QK..j * k + (b + 1) * QK]
                                .iter()
                                .map(|v| v.abs() as f64)
                                .sum();
                            amax / 254.0 * wsum * 1.01 + 1e-6
                        })
                        .sum();
                    let e = (outs[0][i * n + j] as f64 - want[i * n + j]).abs();
                    assert!(e <= bound, "{ty:?} ({i},{j}): error {e} over {bound}");
                }
            }
            // The SIMD builds sum the same int32 block products; only the f32 accumulation
            // order of the scaled blocks may differ.
            for o in &outs[1..] {
                for (a, b) in o.iter().zip(&outs[0]) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn backward_is_dy_times_the_dequantized_matrix() {
        let (rows, k, n) = (5, 64, 300); // more than one backward band
        let dy = random(rows * n, 5);
        let q = QuantMatrix::quantize(&random(k * n, 6), k, n, GgmlType::Q4_0).unwrap();
        let mut wf = vec![0f32; n * k];
        q.dequantize_rows(0, &mut wf);
        let dx = qmatmul_backward(&dy, rows, &q);
        for i in 0..rows {
            for t in 0..k {
                let want: f64 = (0..n)
                    .map(|j| dy[i * n + j] as f64 * wf[j * k + t] as f64)
                    .sum();
                assert!((dx[i * k + t] as f64 - want).abs() < 1e-4, "({i},{t})");
            }
        }
    }
}
