//! The attention ops of [`super::FusedOps`]: masked attention, and masked attention with a
//! bucketed bias (the tree transformer's), on `flex` and under autodiff, over the kernels of
//! [`crate::kernels::attention`].

use super::{Ad, contiguous, dims, f32s, tensor};
use crate::kernels::attention::{self as attn, Block, BucketBias, Heads};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{AttentionModuleOptions, BoolTensorOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::DType;
use std::sync::Arc;

/// Per batch row, query and key, the bucket of the bias table each score reads (`[batch, seq,
/// keys]`), shared by the layers that add a bias.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketIds {
    pub ids: Vec<u16>,
    pub batch: usize,
    pub seq: usize,
    pub keys: usize,
}

/// Inference keeps Burn's own attention, which switches to a flash kernel for long contexts
/// instead of holding every score; the fused kernel is for training, where the
/// probabilities are kept for the backward pass anyway.
pub(super) fn flex_masked_attention(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    mask: FlexTensor,
    scale: f64,
) -> FlexTensor {
    let [b, h, t, _] = dims(&q).try_into().expect("q is 4-D");
    let [_, kvh, n, hd] = dims(&k).try_into().expect("k is 4-D");
    let expand = |x: FlexTensor| {
        if kvh == h {
            return x;
        }
        let x = Flex::float_reshape(x, [b, kvh, 1, n, hd].into());
        let x = Flex::float_expand(x, [b, kvh, h / kvh, n, hd].into());
        Flex::float_reshape(x, [b, h, n, hd].into())
    };
    let mask = Flex::bool_expand(mask, [b, h, t, n].into());
    let options = AttentionModuleOptions {
        scale: Some(scale),
        ..Default::default()
    };
    <Flex as ModuleOps<Flex>>::attention(q, expand(k), expand(v), Some(mask), None, options)
}

pub(super) fn ad_masked_attention<C: CheckpointStrategy>(
    q: FloatTensor<Ad<C>>,
    k: FloatTensor<Ad<C>>,
    v: FloatTensor<Ad<C>>,
    mask: BoolTensor<Ad<C>>,
    scale: f64,
) -> FloatTensor<Ad<C>> {
    match AttentionBackward
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (qp, kp, vp) = (
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
            );
            let bytes = mask_bytes(mask, dims(&qp)[0]);
            let (out, probs, blocks) = attn::forward(
                heads(&qp),
                heads(&kp),
                heads(&vp),
                &bytes,
                None,
                scale as f32,
            );
            let out = tensor(out, qp.shape());
            let state = (
                qp,
                kp,
                vp,
                std::sync::Arc::new(probs),
                std::sync::Arc::new(blocks),
                scale as f32,
            );
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(flex_masked_attention(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            mask,
            scale,
        )),
    }
}

/// The training kernel, its probabilities dropped: they are the size of the bias Burn's
/// attention would need anyway.
pub(super) fn flex_bucket_attention(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    mask: FlexTensor,
    table: FlexTensor,
    ids: Arc<BucketIds>,
    scale: f64,
) -> FlexTensor {
    let bytes = mask_bytes(mask, dims(&q)[0]);
    let table = contiguous(&table);
    let bias = bucket_bias(&table, &ids, &q);
    let (q4, k4, v4) = (heads(&q), heads(&k), heads(&v));
    let (out, _, _) = attn::forward(q4, k4, v4, &bytes, Some(bias), scale as f32);
    tensor(out, q.shape())
}

pub(super) fn ad_bucket_attention<C: CheckpointStrategy>(
    q: FloatTensor<Ad<C>>,
    k: FloatTensor<Ad<C>>,
    v: FloatTensor<Ad<C>>,
    mask: BoolTensor<Ad<C>>,
    table: FloatTensor<Ad<C>>,
    ids: Arc<BucketIds>,
    scale: f64,
) -> FloatTensor<Ad<C>> {
    match BucketAttentionBackward
        .prepare::<C>([q.node(), k.node(), v.node(), table.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (qp, kp, vp) = (
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
            );
            let tp = contiguous(table.primitive());
            let bytes = mask_bytes(mask, dims(&qp)[0]);
            let bias = bucket_bias(&tp, &ids, &qp);
            let (q4, k4, v4) = (heads(&qp), heads(&kp), heads(&vp));
            let (out, probs, blocks) = attn::forward(q4, k4, v4, &bytes, Some(bias), scale as f32);
            let out = tensor(out, qp.shape());
            let state = (
                [qp, kp, vp, tp],
                ids,
                Arc::new(probs),
                Arc::new(blocks),
                scale as f32,
            );
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(flex_bucket_attention(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            mask,
            table.into_primitive(),
            ids,
            scale,
        )),
    }
}

/// The kernels' view of a bias table (contiguous) and its bucket ids, checked against `q`.
fn bucket_bias<'a>(table: &'a FlexTensor, ids: &'a BucketIds, q: &FlexTensor) -> BucketBias<'a> {
    let [heads, n_buckets]: [usize; 2] = dims(table).try_into().expect("bias table is 2-D");
    let [b, h, t, _]: [usize; 4] = dims(q).try_into().expect("q is 4-D");
    assert!(
        heads == h && (ids.batch, ids.seq) == (b, t) && ids.ids.len() == b * t * ids.keys,
        "bucket attention: a table per head and ids per batch row, query and key"
    );
    assert!(
        ids.ids.iter().all(|&i| (i as usize) < n_buckets),
        "bucket attention: ids within the table"
    );
    BucketBias {
        table: f32s(table),
        n_buckets,
        ids: &ids.ids,
    }
}

/// A 4-D tensor's elements with its layout, as the attention kernels read them.
fn heads(t: &FlexTensor) -> Heads<'_> {
    assert_eq!(t.dtype(), DType::F32, "fused kernels run in f32");
    let l = t.layout();
    Heads {
        data: t.storage::<f32>(),
        offset: l.start_offset(),
        dims: l.shape().to_vec().try_into().expect("a 4-D tensor"),
        strides: l.strides().try_into().expect("a 4-D tensor"),
    }
}

/// The `[batch, 1, seq, keys]` mask as bytes `[batch, seq, keys]` (non-zero = masked out).
fn mask_bytes(mask: FlexTensor, batch: usize) -> Vec<u8> {
    // A mask shared by the whole batch (`[1, 1, seq, keys]`) is broadcast, as Burn's would be.
    let [_, one, seq, keys]: [usize; 4] = dims(&mask).try_into().expect("a 4-D attention mask");
    assert_eq!(one, 1, "attention mask is [batch, 1, seq, keys]");
    let m = Flex::bool_expand(mask, [batch, 1, seq, keys].into()).to_contiguous();
    let (start, end) = m.layout().contiguous_offsets().expect("contiguous");
    m.storage::<u8>()[start..end].to_vec()
}

#[derive(Debug)]
pub(super) struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// `q`, `k`, `v`, the probabilities, the blocks that were computed, and the scale.
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        std::sync::Arc<Vec<f32>>,
        std::sync::Arc<Vec<Vec<Block>>>,
        f32,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let d_out = grads.consume::<Flex>(&ops.node);
        let (q, k, v, probs, blocks, scale) = ops.state;
        let g = attn::backward(
            heads(&q),
            heads(&k),
            heads(&v),
            &probs,
            &blocks,
            None,
            heads(&d_out),
            scale,
        );
        for (node, g, like) in [(node_q, g.dq, &q), (node_k, g.dk, &k), (node_v, g.dv, &v)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(g, like.shape()));
            }
        }
    }
}

#[derive(Debug)]
struct BucketAttentionBackward;

impl Backward<Flex, 4> for BucketAttentionBackward {
    /// `q`, `k`, `v` and the bias table, the bucket ids, the probabilities, the blocks, and the
    /// scale.
    #[allow(clippy::type_complexity)]
    type State = (
        [FlexTensor; 4],
        Arc<BucketIds>,
        Arc<Vec<f32>>,
        Arc<Vec<Vec<Block>>>,
        f32,
    );

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<Flex>(&ops.node);
        let ([q, k, v, table], ids, probs, blocks, scale) = ops.state;
        let g = attn::backward(
            heads(&q),
            heads(&k),
            heads(&v),
            &probs,
            &blocks,
            Some(bucket_bias(&table, &ids, &q)),
            heads(&d_out),
            scale,
        );
        let d_table = g.d_table.expect("a bias was given");
        let parts = [(g.dq, &q), (g.dk, &k), (g.dv, &v), (d_table, &table)];
        for (node, (g, like)) in ops.parents.into_iter().zip(parts) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(g, like.shape()));
            }
        }
    }
}
