//! Fused operations with hand-written backward passes, as a Burn backend extension: one kernel
//! where Burn's tensor API would run several ops, each allocating and each recorded by autodiff.
//! Implemented for the `flex` CPU backend (kernels in [`crate::kernels`]) and for
//! `Autodiff<Flex>`; on any other device (or with `ANVIL_FUSED=0`) the model keeps its composed
//! tensor code, which is also the reference the tests hold these against.
//!
//! - [`lm_head_nll`]: LM head + log-softmax + gather + sum, in chunks of rows, with both gradients
//!   computed on the way (the `[tokens, vocab]` logits are never held whole).
//! - [`lm_head_logprobs`]: the same per row, each target's log-probability (and the entropy),
//!   whose backward pass takes one upstream gradient per row and recomputes the logits.
//! - [`attention`]: masked softmax attention that skips fully masked key blocks and keeps the
//!   probabilities, so its backward is four products and no exp; [`bucket_attention`] adds the
//!   tree transformer's bias, read per score from a per-head table (ops in `attention_ops.rs`).
//! - [`linear`]: `x · W` into an unzeroed buffer (Burn's matmul zeroes, then copies, every output).
//! - [`swiglu`], [`rms_norm`], and [`rope`], which also lays the heads out as attention reads them.
//! - [`adamw`]: the optimizer's update of one parameter in one pass, in place.
//!
//! Measured effect on the train benchmark: docs/BENCHMARKS.md.

mod attention_ops;
pub use attention_ops::BucketIds;

use crate::kernels::qmatmul::{self, QuantMatrix};
use crate::kernels::{self, RopeShape};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{Bool, DType, Device, Int, Shape, Tensor, TensorData};
use std::sync::Arc;

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `Σ_i logsumexp(h_i · W) − (h_i · W)[t_i]` over rows `i` with `t_i ≥ 0`; `hidden` is
    /// `[rows, d]`, `head` `[d, vocab]`, `targets` `[rows]` (−1 = no target). Shape `[1]`.
    /// `head_grad = false` when the head is frozen (LoRA): its gradient is then never formed.
    fn lm_head_nll(
        hidden: FloatTensor<Self>,
        head: FloatTensor<Self>,
        targets: IntTensor<Self>,
        head_grad: bool,
    ) -> FloatTensor<Self>;

    /// Per row `i`, `log softmax(h_i · W)[t_i]` (0 where `t_i < 0`), shape `[rows]`, for the
    /// same `hidden`, `head` and `targets` as [`FusedOps::lm_head_nll`]; with `entropy`, also
    /// each target row's entropy of `softmax(h_i · W)` in nats (0 elsewhere), `[rows]`, without
    /// gradient. The backward pass recomputes the logits; a frozen head (not tracked) gets no
    /// gradient, and its `[d, vocab]` product is never formed.
    fn lm_head_logprobs(
        hidden: FloatTensor<Self>,
        head: FloatTensor<Self>,
        targets: IntTensor<Self>,
        entropy: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);

    /// `silu(gate) · up`, element-wise, same shapes.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · weight`.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;

    /// `x · w` over the last dimension of `x` (`w` is `[d_in, d_out]`, Burn's `Linear` layout).
    fn matmul_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x · w` with `w` a frozen matrix kept in Q8_0/Q4_0 blocks (`[d_out, d_in]`, ggml's
    /// layout): only `x` gets a gradient.
    fn quant_linear(x: FloatTensor<Self>, w: Arc<QuantMatrix>) -> FloatTensor<Self>;

    /// Rotary embedding of `x` (`[batch, seq, heads · head_dim]`) by `cos`/`sin` (`[seq,
    /// head_dim]`), returned as `[batch, heads, seq, head_dim]`.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;

    /// `softmax(q·kᵀ·scale, masked) · v` for `q` `[batch, heads, seq, head_dim]`, `k`/`v`
    /// `[batch, kv_heads, keys, head_dim]` (grouped-query: `kv_heads` divides `heads`) and `mask`
    /// `[batch, 1, seq, keys]` (true = may not attend). Rows that see nothing give 0.
    fn masked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// [`FusedOps::masked_attention`] with an additive bias on the scores looked up per head:
    /// score `(b, h, r, c)` gets `table[h, ids[b, r, c]]` (`table` `[heads, n_buckets]`; see
    /// [`BucketIds`]). The table gets a gradient; the `[batch, heads, seq, keys]` bias is never
    /// formed.
    fn bucket_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        table: FloatTensor<Self>,
        ids: Arc<BucketIds>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

// ---- The tensor-level API -------------------------------------------------------------------------

/// Whether the model uses the fused kernels on this device: on `flex` (with or without autodiff),
/// unless `ANVIL_FUSED=0` or [`set_enabled`] asks for Burn's composed ops (to compare the two),
/// or mixed precision is on ([`crate::precision`]: these are f32 kernels).
pub fn enabled(device: &Device) -> bool {
    if crate::precision::compute_dtype().is_some() {
        return false;
    }
    use std::sync::atomic::Ordering::Relaxed;
    let on = match SWITCH.load(Relaxed) {
        UNSET => {
            let on = std::env::var("ANVIL_FUSED").map_or(true, |v| v != "0");
            SWITCH.store(if on { ON } else { OFF }, Relaxed);
            on
        }
        state => state == ON,
    };
    on && matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

/// Turns the fused kernels on or off for the whole process (overriding `ANVIL_FUSED`).
pub fn set_enabled(on: bool) {
    SWITCH.store(
        if on { ON } else { OFF },
        std::sync::atomic::Ordering::Relaxed,
    );
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static SWITCH: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNSET);

pub fn lm_head_nll(hidden: Tensor<2>, head: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let head_grad = head.is_tracked();
    Tensor::from_dispatch(<Dispatch as FusedOps>::lm_head_nll(
        hidden.into_dispatch(),
        head.into_dispatch(),
        targets.into_dispatch(),
        head_grad,
    ))
}

/// Per row of `hidden` (`[rows, d]`), the log-probability of its target under
/// `softmax(hidden · head)` (`targets` `[rows]`, −1 = none, giving 0), and with `entropy` each
/// target row's entropy (no gradient). See [`FusedOps::lm_head_logprobs`].
pub fn lm_head_logprobs(
    hidden: Tensor<2>,
    head: Tensor<2>,
    targets: Tensor<1, Int>,
    entropy: bool,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let (logp, ent) = <Dispatch as FusedOps>::lm_head_logprobs(
        hidden.into_dispatch(),
        head.into_dispatch(),
        targets.into_dispatch(),
        entropy,
    );
    (Tensor::from_dispatch(logp), ent.map(Tensor::from_dispatch))
}

/// A bias-free linear layer, `x · weight`.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::matmul_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// `x · W` for a frozen `W` kept quantized ([`QuantMatrix`], `[d_out, d_in]`). On `flex` the
/// int8 kernels of [`crate::kernels::qmatmul`] run (fused kernels switched off or not: they are
/// the only way to use the blocks without an f32 copy); elsewhere `W` is dequantized for the
/// product.
pub fn quant_linear<const D: usize>(x: Tensor<D>, weight: &Arc<QuantMatrix>) -> Tensor<D> {
    let device = x.device();
    if matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    ) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::quant_linear(
            x.into_dispatch(),
            weight.clone(),
        ));
    }
    let [d_out, d_in] = weight.shape();
    let w = Tensor::<2>::from_data(
        TensorData::new(weight.dequantize_in_out(), [d_in, d_out]),
        &device,
    );
    burn::tensor::module::linear(x, w, None)
}

pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::swiglu(
        gate.into_dispatch(),
        up.into_dispatch(),
    ))
}

pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::rms_norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        eps,
    ))
}

pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::masked_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        scale,
    ))
}

/// [`attention`] plus `table[h, ids[b, r, c]]` on each score (see [`FusedOps::bucket_attention`]).
pub fn bucket_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Tensor<4, Bool>,
    table: Tensor<2>,
    ids: Arc<BucketIds>,
) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::bucket_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        table.into_dispatch(),
        ids,
        scale,
    ))
}

pub fn rope(x: Tensor<3>, cos: Tensor<2>, sin: Tensor<2>, heads: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        heads,
    ))
}

/// One AdamW update of a flattened parameter `p` with gradient `g` and moments `m`, `v`, in one
/// pass over memory (Burn's ops would take a dozen, each allocating). The tensors must live on
/// `flex` without autodiff (the optimizer's inner tensors): check [`enabled`] first.
pub fn adamw(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    step: kernels::AdamWStep,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let flex = |t: Tensor<1>| {
        owned(
            t.try_into_primitive::<Flex>()
                .expect("a flex tensor without autodiff"),
        )
    };
    let (mut p, g, mut m, mut v) = (flex(p), flex(g), flex(m), flex(v));
    kernels::adamw(
        p.storage_mut::<f32>(),
        g.storage::<f32>(),
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
        step,
    );
    (
        Tensor::from_primitive::<Flex>(p),
        Tensor::from_primitive::<Flex>(m),
        Tensor::from_primitive::<Flex>(v),
    )
}

// ---- Flex: the kernels ----------------------------------------------------------------------------

/// `t` with storage holding exactly its elements in order, so `storage`/`storage_mut` are the
/// tensor (a copy only for a strided or offset view; a shared buffer is copied on write).
fn owned(t: FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "fused kernels run in f32");
    let n = t.layout().num_elements();
    let exact = t.layout().contiguous_offsets() == Some((0, n)) && t.bytes().len() == n * 4;
    if exact {
        t
    } else {
        let c = t.to_contiguous();
        tensor(f32s(&c).to_vec(), t.shape())
    }
}

/// A contiguous f32 copy of `t`'s elements (no copy when it already is contiguous).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "fused kernels run in f32");
    t.to_contiguous()
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape.into()))
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.shape().to_vec()
}

/// A 2-D tensor's elements as a strided matrix view (a transposed view stays a view).
fn mat(t: &FlexTensor) -> kernels::MatRef<'_> {
    assert_eq!(t.dtype(), DType::F32, "fused kernels run in f32");
    let l = t.layout();
    let [rows, cols]: [usize; 2] = l.shape().to_vec().try_into().expect("a 2-D tensor");
    let [rs, cs]: [isize; 2] = l.strides().try_into().expect("a 2-D tensor");
    kernels::MatRef {
        data: t.storage::<f32>(),
        offset: l.start_offset(),
        rows,
        cols,
        row_stride: rs,
        col_stride: cs,
    }
}

fn int_vec(t: &FlexTensor) -> Vec<i64> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::I64 => t.as_slice::<i64>().expect("contiguous").to_vec(),
        DType::I32 => t
            .as_slice::<i32>()
            .expect("contiguous")
            .iter()
            .map(|&v| v as i64)
            .collect(),
        other => panic!("integer tensor of dtype {other:?}"),
    }
}

/// The LM head loss, and the gradients of the summed loss `want` asks for: `hidden`'s and
/// `head`'s (a one-element stand-in when the head's is not wanted: nothing reads it).
fn lm_head(
    hidden: &FlexTensor,
    head: &FlexTensor,
    targets: &FlexTensor,
    want: kernels::CeGrads,
) -> (FlexTensor, Option<(FlexTensor, FlexTensor)>) {
    let hidden = hidden.to_contiguous();
    let (h, w) = (mat(&hidden), mat(head));
    let out = kernels::linear_cross_entropy(h, w, &int_vec(targets), want);
    let sum: f64 = out.losses.iter().map(|&l| l as f64).sum();
    let grads = out.d_hidden.map(|dh| {
        let dw = match out.d_head {
            Some(dw) => tensor(dw, [w.rows, w.cols]),
            None => tensor(vec![0.0], [1]),
        };
        (tensor(dh, [h.rows, h.cols]), dw)
    });
    (tensor(vec![sum as f32], [1]), grads)
}

/// Each row's target log-probability (`[rows]`) and, with `entropy`, each row's entropy: the
/// forward pass of [`FusedOps::lm_head_logprobs`], which keeps no gradient (its backward pass
/// needs the upstream one first). `hidden` must be contiguous.
fn lm_head_logprobs_forward(
    hidden: &FlexTensor,
    head: &FlexTensor,
    targets: &[i64],
    entropy: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let out = kernels::linear_cross_entropy_with(
        mat(hidden),
        mat(head),
        targets,
        kernels::RowScales::One,
        entropy,
        kernels::CeGrads::None,
    );
    let rows = targets.len();
    // `0.0 − loss` rather than `−loss`: a row without target gives 0, not −0.
    let logp = out.losses.iter().map(|&l| 0.0 - l).collect();
    let ent = out.entropy.map(|e| tensor(e, [rows]));
    (tensor(logp, [rows]), ent)
}

/// `x` (`[.., d_in]`) as a row-major `[rows, d_in]` matrix, contiguous.
fn rows_of(x: &FlexTensor) -> (FlexTensor, usize, usize) {
    let x = contiguous(x);
    let d = *dims(&x).last().expect("at least 1-D");
    let rows = x.layout().num_elements() / d.max(1);
    (x, rows, d)
}

impl FusedOps for Flex {
    fn matmul_linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        let (xc, rows, d_in) = rows_of(&x);
        let wm = mat(&w);
        assert_eq!(wm.rows, d_in, "linear: weight is [d_in, d_out]");
        let out = kernels::matmul_new(kernels::MatRef::dense(f32s(&xc), rows, d_in), wm);
        let mut shape = dims(&x);
        *shape.last_mut().expect("at least 1-D") = wm.cols;
        tensor(out, shape)
    }

    fn quant_linear(x: FlexTensor, w: Arc<QuantMatrix>) -> FlexTensor {
        let (xc, rows, d_in) = rows_of(&x);
        let [d_out, k] = w.shape();
        assert_eq!(k, d_in, "quant_linear: input width");
        let out = qmatmul::qmatmul(f32s(&xc), rows, &w);
        let mut shape = dims(&x);
        *shape.last_mut().expect("at least 1-D") = d_out;
        tensor(out, shape)
    }

    fn lm_head_nll(
        hidden: FlexTensor,
        head: FlexTensor,
        targets: FlexTensor,
        _: bool,
    ) -> FlexTensor {
        lm_head(&hidden, &head, &targets, kernels::CeGrads::None).0
    }

    fn lm_head_logprobs(
        hidden: FlexTensor,
        head: FlexTensor,
        targets: FlexTensor,
        entropy: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        lm_head_logprobs_forward(&hidden.to_contiguous(), &head, &int_vec(&targets), entropy)
    }

    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        assert_eq!(
            gate.shape(),
            up.shape(),
            "swiglu: gate and up differ in shape"
        );
        let (g, u) = (contiguous(&gate), contiguous(&up));
        tensor(kernels::swiglu(f32s(&g), f32s(&u)), gate.shape())
    }

    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        check_norm(&x, &weight);
        let (xc, w) = (contiguous(&x), contiguous(&weight));
        let (out, _) = kernels::rms_norm(f32s(&xc), f32s(&w), eps as f32);
        tensor(out, x.shape())
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, heads: usize) -> FlexTensor {
        let [b, t, width] = rank3(&x);
        let hd = width / heads;
        let (xc, c, s) = (contiguous(&x), contiguous(&cos), contiguous(&sin));
        assert_eq!(dims(&c), [t, hd], "rope: cos/sin are [seq, head_dim]");
        let shape = RopeShape {
            batch: b,
            seq: t,
            heads,
            head_dim: hd,
        };
        let y = kernels::rope(f32s(&xc), f32s(&c), f32s(&s), shape);
        tensor(y, [b, heads, t, hd])
    }

    fn masked_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: FlexTensor,
        scale: f64,
    ) -> FlexTensor {
        attention_ops::flex_masked_attention(q, k, v, mask, scale)
    }

    fn bucket_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: FlexTensor,
        table: FlexTensor,
        ids: Arc<BucketIds>,
        scale: f64,
    ) -> FlexTensor {
        attention_ops::flex_bucket_attention(q, k, v, mask, table, ids, scale)
    }
}

/// RMSNorm's weight must match the normalized (last) dimension, as the composed broadcast demands.
fn check_norm(x: &FlexTensor, weight: &FlexTensor) {
    assert_eq!(
        dims(x).last(),
        dims(weight).last(),
        "rms_norm: weight does not match the last dimension"
    );
}

fn rank3(x: &FlexTensor) -> [usize; 3] {
    dims(x).try_into().expect("a [batch, seq, width] tensor")
}

// ---- Autodiff<Flex>: the backward passes ---------------------------------------------------------

type Ad<C> = Autodiff<Flex, C>;

/// The single element of a `[1]`-shaped gradient (the loss is a scalar).
fn scalar(t: FlexTensor) -> f32 {
    contiguous(&t).as_slice::<f32>().expect("contiguous")[0]
}

#[derive(Debug)]
struct LmHeadNllBackward;

impl Backward<Flex, 2> for LmHeadNllBackward {
    /// The gradients of the summed loss for `hidden` and `head`, computed in the forward pass.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_hidden, node_head] = ops.parents;
        let g = scalar(grads.consume::<Flex>(&ops.node));
        let (dh, dw) = ops.state;
        for (node, grad) in [(node_hidden, dh), (node_head, dw)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, Flex::float_mul_scalar(grad, g.into()));
            }
        }
    }
}

#[derive(Debug)]
struct LmHeadLogprobsBackward;

impl Backward<Flex, 2> for LmHeadLogprobsBackward {
    /// `hidden` (contiguous), `head` and the targets: the logits are recomputed chunk by chunk,
    /// as the forward pass ran them, rather than kept.
    type State = (FlexTensor, FlexTensor, Vec<i64>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_hidden, node_head] = ops.parents;
        let g = contiguous(&grads.consume::<Flex>(&ops.node));
        // d logp_i = −d loss_i: the rows' upstream gradients, negated, scale `softmax − onehot`.
        let scales: Vec<f32> = f32s(&g).iter().map(|&g| -g).collect();
        let (hidden, head, targets) = ops.state;
        let want = if node_head.is_some() {
            kernels::CeGrads::Both
        } else {
            kernels::CeGrads::Hidden
        };
        let (h, w) = (mat(&hidden), mat(&head));
        let out = kernels::linear_cross_entropy_with(
            h,
            w,
            &targets,
            kernels::RowScales::Per(&scales),
            false,
            want,
        );
        if let (Some(node), Some(dh)) = (node_hidden, out.d_hidden) {
            grads.register::<Flex>(node.id, tensor(dh, [h.rows, h.cols]));
        }
        if let (Some(node), Some(dw)) = (node_head, out.d_head) {
            grads.register::<Flex>(node.id, tensor(dw, [w.rows, w.cols]));
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// `x` (contiguous) and `w`.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let (dy, rows, d_out) = rows_of(&grads.consume::<Flex>(&ops.node));
        let (x, w) = ops.state;
        let dym = kernels::MatRef::dense(f32s(&dy), rows, d_out);
        let d_in = mat(&w).rows;
        if let Some(node) = node_x {
            // dX = dY · Wᵀ
            let dx = kernels::matmul_new(dym, mat(&w).t());
            grads.register::<Flex>(node.id, tensor(dx, x.shape()));
        }
        if let Some(node) = node_w {
            // dW = Xᵀ · dY, summed over every row
            let xm = kernels::MatRef::dense(f32s(&x), rows, d_in);
            grads.register::<Flex>(
                node.id,
                tensor(kernels::matmul_new(xm.t(), dym), [d_in, d_out]),
            );
        }
    }
}

#[derive(Debug)]
struct QuantLinearBackward;

impl Backward<Flex, 1> for QuantLinearBackward {
    /// The frozen matrix and the input's shape: `dX = dY · W` needs no activation.
    type State = (Arc<QuantMatrix>, Shape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let (dy, rows, _) = rows_of(&grads.consume::<Flex>(&ops.node));
        let (w, shape) = ops.state;
        if let Some(node) = node_x {
            let dx = qmatmul::qmatmul_backward(f32s(&dy), rows, &w);
            grads.register::<Flex>(node.id, tensor(dx, shape));
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_gate, node_up] = ops.parents;
        let dout = contiguous(&grads.consume::<Flex>(&ops.node));
        let (gate, up) = ops.state;
        let shape = gate.shape();
        let (dg, du) = kernels::swiglu_backward(f32s(&gate), f32s(&up), f32s(&dout));
        if let Some(node) = node_gate {
            grads.register::<Flex>(node.id, tensor(dg, shape.clone()));
        }
        if let Some(node) = node_up {
            grads.register::<Flex>(node.id, tensor(du, shape));
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// `x` (contiguous), `weight`, and each row's `1/rms`.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x, w, rstd) = ops.state;
        let (dx, dw) = kernels::rms_norm_backward(f32s(&x), f32s(&w), &rstd, f32s(&dy));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, x.shape()));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, w.shape()));
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// `cos`, `sin` (contiguous) and the input's `[batch, seq, width]` and head count.
    type State = (FlexTensor, FlexTensor, [usize; 3], usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (cos, sin, [b, t, width], heads) = ops.state;
        if let Some(node) = node_x {
            let shape = RopeShape {
                batch: b,
                seq: t,
                heads,
                head_dim: width / heads,
            };
            let dx = kernels::rope_backward(f32s(&dy), f32s(&cos), f32s(&sin), shape);
            grads.register::<Flex>(node.id, tensor(dx, [b, t, width]));
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Ad<C> {
    fn matmul_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xc, wp) = (contiguous(x.primitive()), w.primitive().clone());
                let out = Flex::matmul_linear(xc.clone(), wp.clone());
                prep.finish((xc, wp), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::matmul_linear(x.into_primitive(), w.into_primitive()))
            }
        }
    }

    fn quant_linear(x: FloatTensor<Self>, w: Arc<QuantMatrix>) -> FloatTensor<Self> {
        match QuantLinearBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                let out = Flex::quant_linear(x.primitive().clone(), w.clone());
                prep.finish((w, shape), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::quant_linear(x.into_primitive(), w)),
        }
    }

    fn masked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        attention_ops::ad_masked_attention::<C>(q, k, v, mask, scale)
    }

    fn bucket_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        table: FloatTensor<Self>,
        ids: Arc<BucketIds>,
        scale: f64,
    ) -> FloatTensor<Self> {
        attention_ops::ad_bucket_attention::<C>(q, k, v, mask, table, ids, scale)
    }

    fn lm_head_nll(
        hidden: FloatTensor<Self>,
        head: FloatTensor<Self>,
        targets: IntTensor<Self>,
        head_grad: bool,
    ) -> FloatTensor<Self> {
        match LmHeadNllBackward
            .prepare::<C>([hidden.node(), head.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let want = if head_grad {
                    kernels::CeGrads::Both
                } else {
                    kernels::CeGrads::Hidden
                };
                let (loss, grads) = lm_head(hidden.primitive(), head.primitive(), &targets, want);
                prep.finish(grads.expect("asked for"), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::lm_head_nll(
                hidden.into_primitive(),
                head.into_primitive(),
                targets,
                head_grad,
            )),
        }
    }

    fn lm_head_logprobs(
        hidden: FloatTensor<Self>,
        head: FloatTensor<Self>,
        targets: IntTensor<Self>,
        entropy: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let (h, w) = (contiguous(hidden.primitive()), head.primitive().clone());
        let targets = int_vec(&targets);
        let (logp, ent) = lm_head_logprobs_forward(&h, &w, &targets, entropy);
        let ent = ent.map(<Self as burn::backend::AutodiffBackend>::from_inner);
        let logp = match LmHeadLogprobsBackward
            .prepare::<C>([hidden.node(), head.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((h, w, targets), logp),
            OpsKind::UnTracked(prep) => prep.finish(logp),
        };
        (logp, ent)
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwigluBackward
            .prepare::<C>([gate.node(), up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (g, u) = (contiguous(gate.primitive()), contiguous(up.primitive()));
                let out = Flex::swiglu(g.clone(), u.clone());
                prep.finish((g, u), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::swiglu(gate.into_primitive(), up.into_primitive()))
            }
        }
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        match RmsNormBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                check_norm(x.primitive(), weight.primitive());
                let (xc, w) = (contiguous(x.primitive()), contiguous(weight.primitive()));
                let (out, rstd) = kernels::rms_norm(f32s(&xc), f32s(&w), eps as f32);
                let out = tensor(out, xc.shape());
                prep.finish((xc, w, rstd), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rms_norm(
                x.into_primitive(),
                weight.into_primitive(),
                eps,
            )),
        }
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        // The angles are constants: only `x` gets a gradient.
        let (c, s) = (contiguous(cos.primitive()), contiguous(sin.primitive()));
        match RopeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = rank3(x.primitive());
                let out = Flex::rope(x.primitive().clone(), c.clone(), s.clone(), heads);
                prep.finish((c, s, shape, heads), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rope(x.into_primitive(), c, s, heads)),
        }
    }
}
