//! CPU kernels behind the fused operations of [`crate::fused`]: plain loops over slices that the
//! compiler vectorizes, built once per instruction set (AVX-512, AVX2+FMA, baseline) and chosen
//! at run time, split across cores with rayon. Each forward kernel has its backward beside it.
//!
//! Everything here is deterministic: work is split into fixed chunks and partial sums are added
//! in chunk order, so a run and its resumed twin produce the same bits whatever the scheduling.

use rayon::prelude::*;

/// Defines `pub fn $name` that runs `$body` compiled for the best instruction set this CPU has.
/// The body is written once; `#[inline(always)]` lets each `#[target_feature]` copy vectorize it
/// with that set's registers.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                match $crate::kernels::simd_level() {
                    // SAFETY: the CPU was checked to have these features.
                    $crate::kernels::SimdLevel::V4 => return unsafe { v4($($arg),*) },
                    $crate::kernels::SimdLevel::V3 => return unsafe { v3($($arg),*) },
                    $crate::kernels::SimdLevel::Base => {}
                }
            }
            imp($($arg),*)
        }
    };
}

/// The instruction sets the kernels are built for, best last.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum SimdLevel {
    Base,
    /// AVX2 + FMA (x86-64-v3).
    V3,
    /// AVX-512 F/BW/DQ/VL (x86-64-v4).
    V4,
}

/// The best level this CPU runs.
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let v4 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl");
            match (v3, v4) {
                (true, true) => SimdLevel::V4,
                (true, false) => SimdLevel::V3,
                _ => SimdLevel::Base,
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    SimdLevel::Base
}

/// 0 = the detected level; otherwise a level forced by [`force_simd_level`] plus one.
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Runs the kernels at `level` (at most the detected one) for the whole process, or at the
/// detected level again with `None`. For tests: every build of a kernel must give the same bits.
pub fn force_simd_level(level: Option<SimdLevel>) {
    let v = level.map_or(0, |l| l.min(detected_simd_level()) as u8 + 1);
    FORCED.store(v, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn simd_level() -> SimdLevel {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => SimdLevel::Base,
        2 => SimdLevel::V3,
        3 => SimdLevel::V4,
        _ => detected_simd_level(),
    }
}

/// `e^x` to within 1 ulp of the correctly rounded value (measured by the test over [−87, 88]), written so a loop of it vectorizes (glibc's `expf`
/// is one call per element). Cephes' range reduction `x = n·ln 2 + r` with a degree-5 polynomial
/// for `e^r`. Inputs below −87.3 give ~1e-38 instead of 0, above 88.3 saturate; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // `if` rather than `clamp`/`max`, which would turn NaN into a bound.
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.3 { 88.3 } else { x };
    // Round to nearest by the 1.5·2^23 trick: `round()` is a libm call without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is in [-126, 127] after the clamps (NaN casts to 0).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * scale
}

/// Items of `item_len` elements a rayon task takes at least: a small input (a decoded token's
/// few rows) then stays on the calling thread instead of waking the pool for microseconds of work.
fn min_tasks(item_len: usize) -> usize {
    (ELEMS_PER_TASK / item_len.max(1)).max(1)
}

/// Rows handed to one rayon task: enough work to amortize the task, few enough to balance.
fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).clamp(1, 256)
}

// ---- Cross-entropy over the LM head's logits ---------------------------------------------------

/// Lanes of the row reductions: independent accumulators, so the max and the sum vectorize
/// (a single accumulator is a serial dependency chain the compiler may not reorder).
const LANES: usize = 16;

/// The largest element (−∞ for none; NaNs are passed over), in `LANES` independent lanes.
/// Inlined into the callers' instruction-set builds.
#[inline(always)]
pub(crate) fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in chunks.remainder().iter().chain(&lanes) {
        max = if v > max { v } else { max };
    }
    max
}

/// One row of logits, the body every build of the row kernels inlines: returns the loss
/// `logsumexp(x) − x[target]` and, with `ENTROPY`, the entropy of `softmax(x)` (both 0 for
/// `target < 0`, which is not a target). With `GRAD` overwrites `x` with
/// `scale · (softmax(x) − onehot(target))` (zeros for a non-target), the gradient of `scale` times
/// that loss. The flags are constants so each instance keeps only its own loop body.
#[inline(always)]
fn ce_row<const GRAD: bool, const ENTROPY: bool>(
    x: &mut [f32],
    target: i64,
    scale: f32,
) -> (f32, f32) {
    let x_t = if target >= 0 { x[target as usize] } else { 0.0 };
    let max = row_max(x);
    let mut acc = [0f32; LANES];
    // Σ e^z·z with z = x − max, for the entropy `ln Σe^z − Σe^z·z / Σe^z`.
    let mut ent = [0f32; LANES];
    let mut rest = 0f32;
    let mut ent_rest = 0f32;
    // Past exp's lower clamp e^z is ~1e-38, not 0: a clamped z keeps an −∞ logit from
    // turning its negligible share into −∞.
    let floor = |z: f32| if z < -88.0 { -88.0 } else { z };
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let z = c[i] - max;
            let e = exp(z);
            if ENTROPY {
                ent[i] += e * floor(z);
            }
            if GRAD {
                c[i] = e;
            }
            acc[i] += e;
        }
    }
    for v in chunks.into_remainder() {
        let z = *v - max;
        let e = exp(z);
        if ENTROPY {
            ent_rest += e * floor(z);
        }
        if GRAD {
            *v = e;
        }
        rest += e;
    }
    let sum = acc.iter().sum::<f32>() + rest;
    if target < 0 {
        if GRAD {
            x.fill(0.0);
        }
        // Not counted, but a NaN still shows (the composed `logp · 0` keeps it too).
        let nan_or_zero = if sum.is_nan() { f32::NAN } else { 0.0 };
        return (nan_or_zero, 0.0);
    }
    if GRAD {
        let inv = 1.0 / sum * scale;
        for v in x.iter_mut() {
            *v *= inv;
        }
        x[target as usize] -= scale;
    }
    let ln_sum = sum.ln();
    let entropy = if ENTROPY {
        ln_sum - (ent.iter().sum::<f32>() + ent_rest) / sum
    } else {
        0.0
    };
    (max + ln_sum - x_t, entropy)
}

multiversion! {
    /// One row of logits: returns the loss `logsumexp(x) − x[target]` (0 for `target < 0`, which
    /// is not a target), and with `grad` overwrites `x` with `softmax(x) − onehot(target)` (zeros
    /// for a non-target), the gradient of that loss. A NaN anywhere makes the loss NaN.
    pub fn cross_entropy_row(x: &mut [f32], target: i64, grad: bool) -> f32 {
        if grad {
            ce_row::<true, false>(x, target, 1.0).0
        } else {
            ce_row::<false, false>(x, target, 1.0).0
        }
    }
}

multiversion! {
    /// [`cross_entropy_row`] with the gradient (`grad = Some(scale)`) scaled by `scale`, and
    /// with `entropy` the entropy in nats of `softmax(x)` as well (0 for a non-target): returns
    /// `(loss, entropy)`.
    pub fn cross_entropy_row_with(x: &mut [f32], target: i64, grad: Option<f32>, entropy: bool) -> (f32, f32) {
        match (grad, entropy) {
            (Some(s), true) => ce_row::<true, true>(x, target, s),
            (Some(s), false) => ce_row::<true, false>(x, target, s),
            (None, true) => ce_row::<false, true>(x, target, 1.0),
            (None, false) => ce_row::<false, false>(x, target, 1.0),
        }
    }
}

/// Cross-entropy of every row of `logits` (`[rows, vocab]`, row-major) against `targets` (−1 =
/// not a target). With `grad`, turns `logits` into the gradient of the summed loss. Returns each
/// row's loss.
pub fn cross_entropy(logits: &mut [f32], vocab: usize, targets: &[i64], grad: bool) -> Vec<f32> {
    let grad = grad.then_some(RowScales::One);
    cross_entropy_with(logits, vocab, targets, grad, false).0
}

/// The factor on each row's loss in the sum whose gradient the cross-entropy kernels compute.
#[derive(Debug, Clone, Copy)]
pub enum RowScales<'a> {
    /// Every row's loss counts once: the plain summed loss.
    One,
    /// Row `i`'s loss scaled by `w[i]`: a per-row upstream gradient (per-token log-probabilities
    /// pass `−g`), so each row's `softmax − onehot` is scaled before any product with it.
    Per(&'a [f32]),
}

impl RowScales<'_> {
    fn get(self, row: usize) -> f32 {
        match self {
            RowScales::One => 1.0,
            RowScales::Per(w) => w[row],
        }
    }

    /// The scales of rows `start..start + n`.
    fn rows(self, start: usize, n: usize) -> Self {
        match self {
            RowScales::One => RowScales::One,
            RowScales::Per(w) => RowScales::Per(&w[start..start + n]),
        }
    }
}

/// [`cross_entropy`] with each row's gradient scaled by `grad` (no gradient: `None`), and with
/// `entropy` each row's entropy in nats (0 for a non-target) too: returns `(losses, entropies)`.
pub fn cross_entropy_with(
    logits: &mut [f32],
    vocab: usize,
    targets: &[i64],
    grad: Option<RowScales>,
    entropy: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let rows = targets.len();
    assert!(vocab > 0, "cross-entropy over an empty vocabulary");
    assert_eq!(logits.len(), rows * vocab, "logits are [rows, vocab]");
    if let Some(RowScales::Per(w)) = grad {
        assert_eq!(w.len(), rows, "one scale per row");
    }
    let mut losses = vec![0f32; rows];
    let mut entropies = vec![0f32; rows];
    let per = rows_per_task(vocab);
    logits
        .par_chunks_mut(per * vocab)
        .zip(losses.par_chunks_mut(per))
        .zip(entropies.par_chunks_mut(per))
        .zip(targets.par_chunks(per))
        .enumerate()
        .for_each(|(task, (((x, l), h), t))| {
            let rows = x.chunks_mut(vocab).zip(l.iter_mut()).zip(h.iter_mut());
            for (i, (((row, loss), ent), &target)) in rows.zip(t).enumerate() {
                let scale = grad.map(|s| s.get(task * per + i));
                (*loss, *ent) = cross_entropy_row_with(row, target, scale, entropy);
            }
        });
    (losses, entropy.then_some(entropies))
}

/// A matrix in memory: element `(i, j)` at `data[offset + i·row_stride + j·col_stride]`, so a
/// transpose is a swap of strides (a tied embedding serves as the LM head without a copy).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl<'a> MatRef<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        Self {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `start..start + n`.
    pub fn rows(self, start: usize, n: usize) -> Self {
        assert!(start + n <= self.rows);
        let offset = self.offset as isize + start as isize * self.row_stride;
        Self {
            offset: offset as usize,
            rows: n,
            ..self
        }
    }

    /// Checks that every element is inside `data`.
    /// Panics unless every element of a non-empty view is inside `data` (the products read
    /// through raw pointers, and the views are public).
    fn check(&self) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let span = |n: usize, s: isize| (n as isize - 1).checked_mul(s);
        let ends = (|| {
            let (r, c) = (
                span(self.rows, self.row_stride)?,
                span(self.cols, self.col_stride)?,
            );
            let base = isize::try_from(self.offset).ok()?;
            let lo = base.checked_add(r.min(0))?.checked_add(c.min(0))?;
            let hi = base.checked_add(r.max(0))?.checked_add(c.max(0))?;
            Some((lo, hi))
        })();
        assert!(
            matches!(ends, Some((lo, hi)) if lo >= 0 && (hi as usize) < self.data.len()),
            "matrix view out of bounds"
        );
    }
}

/// `dst = a · b` (or `dst += a · b` with `accumulate`); `dst` is row-major `[a.rows, b.cols]`.
/// gemm's kernels, across all rayon threads; each output element is summed by one thread in a
/// fixed order, so results do not depend on scheduling.
pub fn matmul(dst: &mut [f32], accumulate: bool, a: MatRef, b: MatRef) {
    assert_eq!(dst.len(), a.rows * b.cols, "matmul: output size");
    let cols = b.cols;
    gemm_into(dst, cols, accumulate, a, b, 1.0, true);
}

/// `a · b` into a new row-major `[a.rows, b.cols]` buffer, across all threads. The buffer is not
/// zeroed first: gemm writes every element (a page of zeros per output is what this saves).
pub fn matmul_new(a: MatRef, b: MatRef) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n) = (a.rows, b.cols);
    if a.cols == 0 {
        return vec![0.0; m * n];
    }
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: gemm writes all m·n elements without reading them (`accumulate` false), then
    // they are initialized.
    unsafe {
        gemm_raw(out.as_mut_ptr(), n, m * n, false, a, b, 1.0, true);
        out.set_len(m * n);
    }
    out
}

/// `dst = scale · a · b` (or `+=` with `accumulate`) into a row-major block whose rows are
/// `dst_row_stride` apart (the first `b.cols` elements of each row). `parallel` spreads one
/// product over all threads; without it the caller is already running one task per thread.
pub(crate) fn gemm_into(
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
) {
    // SAFETY: `dst` is initialized memory of `dst.len()` elements.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr(),
            dst_row_stride,
            dst.len(),
            accumulate,
            a,
            b,
            scale,
            parallel,
        )
    }
}

/// # Safety
/// `dst` must be valid for writes of `dst_len` elements, and for reads too with `accumulate`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_row_stride: usize,
    dst_len: usize,
    accumulate: bool,
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= dst_row_stride && (m - 1) * dst_row_stride + n <= dst_len,
        "matmul: output size"
    );
    a.check();
    b.check();
    // Waking the other threads costs more than a small product gains (one decoded token's
    // projections): flex's own threshold, 192³ multiply-adds.
    let parallelism = if parallel && m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views were bounds-checked above, and so was every element of `dst` written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr().add(b.offset),
            b.col_stride,
            b.row_stride,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Which gradients [`linear_cross_entropy`] computes on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeGrads {
    None,
    /// Only `hidden`'s: a frozen head (LoRA) needs no `[d, vocab]` product per chunk.
    Hidden,
    Both,
}

/// What [`linear_cross_entropy`] returns.
pub struct LinearCrossEntropy {
    /// Each row's loss (0 where there is no target).
    pub losses: Vec<f32>,
    /// The gradient of the summed loss with respect to `hidden` (`[rows, d]`, row-major), unless
    /// [`CeGrads::None`].
    pub d_hidden: Option<Vec<f32>>,
    /// With respect to `head` (`[d, vocab]`), with [`CeGrads::Both`].
    pub d_head: Option<Vec<f32>>,
    /// Each row's entropy in nats (0 where there is no target), when asked for.
    pub entropy: Option<Vec<f32>>,
}

/// The LM head and its cross-entropy in chunks of rows, never holding the whole `[rows, vocab]`
/// logits: per chunk, the logits, their loss and (with `grad`) `softmax − onehot` in place, then
/// straight away that chunk's share of both gradients. The upstream gradient of a loss is a
/// scalar, so the backward pass only has to scale them. (The "fused linear cross-entropy" of
/// Liger-Kernel, on the CPU.)
pub fn linear_cross_entropy(
    hidden: MatRef,
    head: MatRef,
    targets: &[i64],
    want: CeGrads,
) -> LinearCrossEntropy {
    linear_cross_entropy_with(hidden, head, targets, RowScales::One, false, want)
}

/// [`linear_cross_entropy`] with the gradients those of `Σ scale_i · loss_i` (`scales`), and
/// with `entropy` each row's entropy from the same chunk of logits. Per-token log-probabilities
/// need both: their upstream gradient is one number per row, not a scalar to apply afterwards,
/// so their backward pass runs this again with the scales rather than keeping the gradients.
pub fn linear_cross_entropy_with(
    hidden: MatRef,
    head: MatRef,
    targets: &[i64],
    scales: RowScales,
    entropy: bool,
    want: CeGrads,
) -> LinearCrossEntropy {
    let grad = (want != CeGrads::None).then_some(scales);
    let (rows, d, vocab) = (hidden.rows, hidden.cols, head.cols);
    assert_eq!(head.rows, d, "head is [d, vocab]");
    assert_eq!(targets.len(), rows, "one target per row");
    if let RowScales::Per(w) = scales {
        assert_eq!(w.len(), rows, "one scale per row");
    }
    // ~16 MB of logits at a time: large matmuls, and an allocation glibc keeps on its heap.
    let chunk = (4 << 20) / vocab.max(1);
    let chunk = chunk.clamp(1, rows.max(1));
    let mut logits = vec![0f32; chunk * vocab];
    let mut losses = Vec::with_capacity(rows);
    let mut entropies = entropy.then(|| Vec::with_capacity(rows));
    let mut d_hidden = grad.map(|_| vec![0f32; rows * d]);
    let mut d_head = (want == CeGrads::Both).then(|| vec![0f32; d * vocab]);
    let mut start = 0;
    while start < rows {
        let n = chunk.min(rows - start);
        let h = hidden.rows(start, n);
        let buf = &mut logits[..n * vocab];
        matmul(buf, false, h, head);
        let chunk_grad = grad.map(|s| s.rows(start, n));
        let chunk_targets = &targets[start..start + n];
        let (l, e) = cross_entropy_with(buf, vocab, chunk_targets, chunk_grad, entropy);
        losses.extend(l);
        if let (Some(all), Some(e)) = (&mut entropies, e) {
            all.extend(e);
        }
        let g = MatRef::dense(buf, n, vocab);
        if let Some(dh) = &mut d_hidden {
            matmul(&mut dh[start * d..(start + n) * d], false, g, head.t());
        }
        if let Some(dw) = &mut d_head {
            matmul(dw, start > 0, h.t(), g);
        }
        start += n;
    }
    LinearCrossEntropy {
        losses,
        d_hidden,
        d_head,
        entropy: entropies,
    }
}

// ---- SwiGLU: silu(gate) · up ---------------------------------------------------------------------

multiversion! {
    fn swiglu_chunk(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp(-g)) * u;
        }
    }
}

multiversion! {
    fn swiglu_backward_chunk(gate: &[f32], up: &[f32], dout: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
        for i in 0..gate.len() {
            let (g, u, d) = (gate[i], up[i], dout[i]);
            let s = 1.0 / (1.0 + exp(-g));
            let silu = g * s;
            dup[i] = d * silu;
            // d silu/dg = s·(1 + g·(1 − s))
            dgate[i] = d * u * (s + silu * (1.0 - s));
        }
    }
}

const ELEMS_PER_TASK: usize = 16_384;

/// `silu(gate) · up`, element-wise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len());
    let mut out = vec![0f32; gate.len()];
    out.par_chunks_mut(ELEMS_PER_TASK)
        .zip(gate.par_chunks(ELEMS_PER_TASK))
        .zip(up.par_chunks(ELEMS_PER_TASK))
        .for_each(|((o, g), u)| swiglu_chunk(g, u, o));
    out
}

/// Gradients of [`swiglu`] with respect to `gate` and `up` given the output's gradient `dout`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = gate.len();
    assert!(up.len() == n && dout.len() == n);
    let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
    dg.par_chunks_mut(ELEMS_PER_TASK)
        .zip(du.par_chunks_mut(ELEMS_PER_TASK))
        .zip(gate.par_chunks(ELEMS_PER_TASK))
        .zip(up.par_chunks(ELEMS_PER_TASK))
        .zip(dout.par_chunks(ELEMS_PER_TASK))
        .for_each(|((((dg, du), g), u), d)| swiglu_backward_chunk(g, u, d, dg, du));
    (dg, du)
}

// ---- RMSNorm ---------------------------------------------------------------------------------------

multiversion! {
    fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], rstd: &mut [f32]) {
        let d = w.len();
        for ((xr, or), r) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(rstd.iter_mut()) {
            let mut ss = 0f32;
            for &v in xr {
                ss += v * v;
            }
            let inv = 1.0 / (ss / d as f32 + eps).sqrt();
            *r = inv;
            for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
                *o = v * inv * g;
            }
        }
    }
}

multiversion! {
    /// dx = r·(dy·w − x̂·mean(dy·w·x̂)) with x̂ = x·r; adds dy·x̂ into `dw`.
    fn rms_norm_backward_rows(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
        let d = w.len();
        for (((xr, dyr), dxr), &r) in x
            .chunks_exact(d)
            .zip(dy.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
            .zip(rstd)
        {
            let mut dot = 0f32;
            for i in 0..d {
                dot += dyr[i] * w[i] * xr[i];
            }
            let c = dot * r * r / d as f32;
            for i in 0..d {
                dxr[i] = r * (dyr[i] * w[i] - xr[i] * c);
                dw[i] += dyr[i] * xr[i] * r;
            }
        }
    }
}

/// RMSNorm of every row of `x` (rows of `w.len()`): returns the output and each row's
/// `1/sqrt(mean(x²) + eps)`, which the backward reuses.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    assert!(d > 0 && x.len() % d == 0, "rms_norm: rows of {d} elements");
    let rows = x.len() / d;
    let (mut out, mut rstd) = (vec![0f32; x.len()], vec![0f32; rows]);
    let per = rows_per_task(d);
    out.par_chunks_mut(per * d)
        .zip(rstd.par_chunks_mut(per))
        .zip(x.par_chunks(per * d))
        .for_each(|((o, r), x)| rms_norm_rows(x, w, eps, o, r));
    (out, rstd)
}

/// Gradients of [`rms_norm`]: `(dx, dw)`. `dw` is summed per fixed chunk of rows, then over the
/// chunks in order.
pub fn rms_norm_backward(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let per = rows_per_task(d);
    let mut dx = vec![0f32; x.len()];
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(per * d)
        .zip(x.par_chunks(per * d))
        .zip(dy.par_chunks(per * d))
        .zip(rstd.par_chunks(per))
        .map(|(((dx, x), dy), r)| {
            let mut dw = vec![0f32; d];
            rms_norm_backward_rows(x, w, r, dy, dx, &mut dw);
            dw
        })
        .collect();
    let mut dw = vec![0f32; d];
    for p in &partials {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    (dx, dw)
}

// ---- Rotary embeddings -----------------------------------------------------------------------------

multiversion! {
    /// Rotates one head vector: `y = x·cos + rotate_half(x)·sin` (HF's layout: channel i pairs
    /// with i + d/2); `inverse` applies the transpose (the backward), rotating by −angle.
    fn rope_head(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32], inverse: bool) {
        let half = x.len() / 2;
        let (x1, x2) = x.split_at(half);
        let (y1, y2) = y.split_at_mut(half);
        let sgn = if inverse { -1.0 } else { 1.0 };
        for i in 0..half {
            let (c, s) = (cos[i], sgn * sin[i]);
            y1[i] = x1[i] * c - x2[i] * s;
            y2[i] = x2[i] * c + x1[i] * s;
        }
    }
}

/// The sizes [`rope`] and [`rope_backward`] work with.
#[derive(Clone, Copy, Debug)]
pub struct RopeShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl RopeShape {
    fn len(self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }
}

/// Rotary embedding fused with the head split: `x` is `[batch, seq, heads · head_dim]` (a
/// projection's output), the result `[batch, heads, seq, head_dim]` (what attention reads).
/// `cos`/`sin` are `[seq, head_dim]` in HF's duplicated-halves layout (only the first half of each
/// row is read).
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], shape: RopeShape) -> Vec<f32> {
    let RopeShape {
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    assert_eq!(x.len(), shape.len());
    let mut y = vec![0f32; x.len()];
    if y.is_empty() {
        return y;
    }
    // One task per (batch, head): it writes one contiguous [seq, head_dim] block.
    y.par_chunks_mut(seq * head_dim)
        .enumerate()
        .with_min_len(min_tasks(seq * head_dim))
        .for_each(|(bh, block)| {
            let (b, h) = (bh / heads, bh % heads);
            for (t, out) in block.chunks_exact_mut(head_dim).enumerate() {
                let at = (b * seq + t) * heads * head_dim + h * head_dim;
                let table = t * head_dim..t * head_dim + head_dim;
                rope_head(
                    &x[at..at + head_dim],
                    &cos[table.clone()],
                    &sin[table],
                    out,
                    false,
                );
            }
        });
    y
}

/// Backward of [`rope`]: `dy` is `[batch, heads, seq, head_dim]`, the result `[batch, seq,
/// heads · head_dim]`.
pub fn rope_backward(dy: &[f32], cos: &[f32], sin: &[f32], shape: RopeShape) -> Vec<f32> {
    let RopeShape {
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    assert_eq!(dy.len(), shape.len());
    let mut dx = vec![0f32; dy.len()];
    if dx.is_empty() {
        return dx;
    }
    // One task per (batch, position): it writes one contiguous [heads · head_dim] row.
    dx.par_chunks_mut(heads * head_dim)
        .enumerate()
        .with_min_len(min_tasks(heads * head_dim))
        .for_each(|(bt, row)| {
            let (b, t) = (bt / seq, bt % seq);
            let table = t * head_dim..t * head_dim + head_dim;
            for (h, out) in row.chunks_exact_mut(head_dim).enumerate() {
                let at = ((b * heads + h) * seq + t) * head_dim;
                rope_head(
                    &dy[at..at + head_dim],
                    &cos[table.clone()],
                    &sin[table.clone()],
                    out,
                    true,
                );
            }
        });
    dx
}

// ---- AdamW ---------------------------------------------------------------------------------------

/// One AdamW update's constants, as the f32 scalars Burn's tensor ops would apply, so the fused
/// update gives the composed one's bits.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// `1 − lr·weight_decay`, for parameters that decay.
    pub decay: Option<f32>,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// `√(1 − β₂ᵗ)`.
    pub sqrt_bias_correction2: f32,
    pub eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
}

multiversion! {
    fn adamw_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
        let decay = s.decay.unwrap_or(1.0);
        for i in 0..p.len() {
            let pi = if s.decay.is_some() { p[i] * decay } else { p[i] };
            let mi = m[i] * s.beta1 + g[i] * s.one_minus_beta1;
            let vi = v[i] * s.beta2 + g[i] * g[i] * s.one_minus_beta2;
            let denom = vi.sqrt() / s.sqrt_bias_correction2 + s.eps;
            p[i] = pi - mi / denom * s.step_size;
            m[i] = mi;
            v[i] = vi;
        }
    }
}

/// AdamW on one parameter in place, in one pass: `p ← p·decay − step·m̂/(√v̂ + eps)` with the
/// moments updated on the way (PyTorch's order of operations).
pub fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamWStep) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: lengths differ"
    );
    p.par_chunks_mut(ELEMS_PER_TASK)
        .zip(g.par_chunks(ELEMS_PER_TASK))
        .zip(m.par_chunks_mut(ELEMS_PER_TASK))
        .zip(v.par_chunks_mut(ELEMS_PER_TASK))
        .for_each(|(((p, g), m), v)| adamw_chunk(p, g, m, v, s));
}

// After the macro: the attention kernels use `multiversion!` too.
pub mod attention;
pub mod qmatmul;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_over_the_range() {
        // Against e^x in f64 rounded to f32, in units in the last place (positive floats order
        // like their bits).
        let mut worst = 0u32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x).to_bits(), ((x as f64).exp() as f32).to_bits());
            worst = worst.max(a.abs_diff(b));
            x += 0.00137;
        }
        println!("exp: at most {worst} ulp");
        assert!(worst <= 2, "{worst} ulp");
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(1000.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    fn reference_ce(row: &[f32], t: i64) -> (f64, Vec<f64>) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + s.ln();
        if t < 0 {
            return (0.0, vec![0.0; row.len()]);
        }
        let mut g: Vec<f64> = row.iter().map(|&v| (v as f64 - lse).exp()).collect();
        g[t as usize] -= 1.0;
        (lse - row[t as usize] as f64, g)
    }

    #[test]
    fn cross_entropy_and_its_gradient_match_a_float64_reference() {
        let (rows, vocab) = (37, 1000);
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 20.0)
            .collect();
        let targets: Vec<i64> = (0..rows as i64)
            .map(|r| {
                if r % 5 == 4 {
                    -1
                } else {
                    r * 31 % vocab as i64
                }
            })
            .collect();
        let mut plain = logits.clone();
        let sum: f64 = cross_entropy(&mut plain, vocab, &targets, false)
            .iter()
            .map(|&l| l as f64)
            .sum();
        assert_eq!(plain, logits, "without grad the logits are left alone");
        let mut grad = logits.clone();
        let sum_g: f64 = cross_entropy(&mut grad, vocab, &targets, true)
            .iter()
            .map(|&l| l as f64)
            .sum();
        let mut want = 0.0;
        for r in 0..rows {
            let (l, g) = reference_ce(&logits[r * vocab..(r + 1) * vocab], targets[r]);
            want += l;
            for (a, b) in grad[r * vocab..(r + 1) * vocab].iter().zip(&g) {
                assert!((*a as f64 - b).abs() < 1e-6, "grad {a} vs {b}");
            }
        }
        assert!((sum - want).abs() / want < 1e-6, "{sum} vs {want}");
        assert!((sum_g - want).abs() / want < 1e-6, "{sum_g} vs {want}");
    }

    #[test]
    fn scaled_gradients_and_entropy_match_a_float64_reference() {
        let (rows, vocab) = (29, 700);
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 16.0)
            .collect();
        let targets: Vec<i64> = (0..rows as i64)
            .map(|r| {
                if r % 4 == 3 {
                    -1
                } else {
                    r * 53 % vocab as i64
                }
            })
            .collect();
        let scales: Vec<f32> = (0..rows).map(|r| (r as f32 - 11.0) / 3.0).collect();
        let mut grad = logits.clone();
        let (losses, entropy) = cross_entropy_with(
            &mut grad,
            vocab,
            &targets,
            Some(RowScales::Per(&scales)),
            true,
        );
        let entropy = entropy.expect("asked for");
        let mut plain = logits.clone();
        let (losses_plain, none) = cross_entropy_with(&mut plain, vocab, &targets, None, false);
        assert!(none.is_none());
        assert_eq!(losses, losses_plain, "the scales only touch the gradient");
        for r in 0..rows {
            let row = &logits[r * vocab..(r + 1) * vocab];
            let (l, g) = reference_ce(row, targets[r]);
            assert!((losses[r] as f64 - l).abs() < 1e-5 * l.max(1.0));
            for (a, b) in grad[r * vocab..(r + 1) * vocab].iter().zip(&g) {
                let want = b * scales[r] as f64;
                assert!((*a as f64 - want).abs() < 1e-6, "grad {a} vs {want}");
            }
            let h = if targets[r] < 0 {
                0.0
            } else {
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                -row.iter()
                    .map(|&v| (v as f64 - lse).exp() * (v as f64 - lse))
                    .sum::<f64>()
            };
            assert!(
                (entropy[r] as f64 - h).abs() < 1e-5,
                "entropy {} vs {h}",
                entropy[r]
            );
        }
    }

    #[test]
    #[should_panic(expected = "matrix view out of bounds")]
    fn a_view_past_its_data_is_refused() {
        let view = MatRef {
            data: &[],
            offset: 0,
            rows: 1,
            cols: 1,
            row_stride: 1,
            col_stride: 1,
        };
        matmul_new(view, MatRef::dense(&[1.0], 1, 1));
    }

    #[test]
    fn empty_inputs_give_empty_outputs() {
        let shape = RopeShape {
            batch: 2,
            seq: 0,
            heads: 3,
            head_dim: 8,
        };
        assert!(rope(&[], &[], &[], shape).is_empty());
        assert!(rope_backward(&[], &[], &[], shape).is_empty());
        assert!(swiglu(&[], &[]).is_empty());
        assert_eq!(
            matmul_new(MatRef::dense(&[], 2, 0), MatRef::dense(&[], 0, 3)),
            vec![0.0; 6]
        );
    }

    #[test]
    fn cross_entropy_propagates_nan() {
        let mut x = vec![0.0, f32::NAN, 1.0, 2.0];
        assert!(cross_entropy(&mut x, 4, &[2], false)[0].is_nan());
        let mut x = vec![0.0; 40];
        x[33] = f32::NAN;
        assert!(cross_entropy(&mut x, 40, &[2], true)[0].is_nan());
        // A row that is no target still shows a NaN, as the composed `logp · 0` does.
        let mut x = vec![0.0, f32::NAN, 1.0, 2.0];
        assert!(cross_entropy(&mut x, 4, &[-1], true)[0].is_nan());
    }
}
