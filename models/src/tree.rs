//! The tree transformer (`model.arch = "tree"`): the dense decoder plus two ways to see where
//! each token sits in the syntax tree, from the per-token positions the data pipeline stores
//! (`data.tokenize.ast`: depth and child-index path of the deepest node at the token's first
//! byte, in the parse of the text up to the token's end — see `anvil_data::parse::PrefixPositions`).
//!
//! - **Tree positional encoding** (Shiv & Quirk, NeurIPS 2019): a token's path, read from its
//!   node upward for at most `max_depth` levels, is a stack of one-hot vectors (level k: the
//!   child index of the k-th ancestor, capped at `max_width − 1`). Level k is weighted by a
//!   learned decay `decay[k]` (initialized `0.9^k`), and the weighted stack is projected to
//!   `d_model` and added to the token embedding (RoPE still encodes sequence order).
//! - **Tree attention bias** (the tree-relative attention of Kim et al., "Code Prediction by
//!   Feeding Trees to Transformers"): for a query token and a key token, the steps from the
//!   query's node up to their lowest common ancestor and from there down to the key's node, each
//!   capped at `bias_max_steps`, pick a bucket; each biased layer learns one scalar per head and
//!   bucket, added to the attention logits. Tokens without a position (special tokens, padding,
//!   fill-in-the-middle documents) share one bucket of their own.

use crate::fused::BucketIds;
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `ast_path` filler for "no node at this level" (the data pipeline's `NO_LEVEL`).
pub const NO_LEVEL: u16 = u16::MAX;

/// The recipe's `[model.tree]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TreeConfig {
    /// Levels of a token's path the encoding reads, from its node upward.
    pub max_depth: usize,
    /// One-hot slots per level; larger child indices share the last one.
    pub max_width: usize,
    /// Add the tree positional encoding to the embeddings.
    pub positions: bool,
    /// Per layer, whether it adds the tree attention bias; repeated over the layers like
    /// `attention` (`[true]`: every layer, `[false]`: none).
    pub bias: Vec<bool>,
    /// Steps up to and down from the common ancestor are capped at this in the bias buckets.
    pub bias_max_steps: usize,
    /// The language a decoder parses its text in (`python`, `rust`, …), since generation has
    /// only text where training read each file's own language.
    pub lang: String,
    /// Path levels each token's position keeps: the shards' `data.tokenize.ast_max_path`,
    /// recorded by the trainer so that generation truncates paths as training did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ast_max_path: Option<usize>,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_width: 16,
            positions: true,
            bias: vec![true],
            bias_max_steps: 4,
            lang: "python".into(),
            ast_max_path: None,
        }
    }
}

impl TreeConfig {
    pub fn validate(&self, n_layers: usize) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        for (key, v, max) in [
            // The one-hot stack is `max_depth · max_width` values per token on the host.
            ("max_depth", self.max_depth, 64),
            ("max_width", self.max_width, 64),
            ("bias_max_steps", self.bias_max_steps, 64),
        ] {
            if v == 0 || v > max {
                return bad(key, format!("must be in 1..={max}, got {v}"));
            }
        }
        // Recorded from the shards (≤ their own limit); a hand-edited model.json must not make
        // every decode step allocate `keys × ast_max_path` levels per row unchecked.
        if let Some(m) = self.ast_max_path
            && !(1..=1024).contains(&m)
        {
            return bad("ast_max_path", format!("must be in 1..=1024, got {m}"));
        }
        if self.bias.is_empty() || !n_layers.is_multiple_of(self.bias.len()) {
            return bad(
                "bias",
                format!(
                    "{} entries do not repeat evenly over {n_layers} layers",
                    self.bias.len()
                ),
            );
        }
        Ok(())
    }

    /// Buckets of the attention bias: every (up, down) pair, plus "no position".
    pub fn buckets(&self) -> usize {
        (self.bias_max_steps + 1).pow(2) + 1
    }

    /// Whether layer `i` adds the bias.
    pub fn biased(&self, i: usize) -> bool {
        self.bias[i % self.bias.len()]
    }

    /// Parameters the tree parts add to a model of `n_layers` layers with `n_heads` heads.
    pub fn parameter_count(&self, n_layers: usize, n_heads: usize, d_model: usize) -> u128 {
        let enc = if self.positions {
            (self.max_depth * self.max_width * d_model + self.max_depth) as u128
        } else {
            0
        };
        let biased = (0..n_layers).filter(|&i| self.biased(i)).count();
        enc + (biased * n_heads * self.buckets()) as u128
    }
}

/// Per token of a batch, its tree position as the shards store it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TreePositions {
    /// Path entries stored per token (the shards' `ast_max_path`).
    pub max_path: usize,
    /// Per token, the depth of its node (0: no position).
    pub depth: Vec<u16>,
    /// Per token, `max_path` child indices from the root down, padded with [`NO_LEVEL`].
    pub path: Vec<u16>,
}

impl TreePositions {
    /// Token `t`'s stored path (root first, without padding).
    pub fn path_of(&self, t: usize) -> &[u16] {
        let p = &self.path[t * self.max_path..(t + 1) * self.max_path];
        let n = p.iter().position(|&v| v == NO_LEVEL).unwrap_or(p.len());
        &p[..n]
    }

    /// Appends one token's position (its path truncated to `max_path`, then padded).
    pub fn push(&mut self, depth: u16, path: &[u16]) {
        let n = path.len().min(self.max_path);
        self.depth.push(depth);
        self.path.extend_from_slice(&path[..n]);
        self.path
            .extend(std::iter::repeat_n(NO_LEVEL, self.max_path - n));
    }

    /// Positions of `len` tokens that sit nowhere (padding, special tokens).
    pub fn unplaced(max_path: usize, len: usize) -> TreePositions {
        TreePositions {
            max_path,
            depth: vec![0; len],
            path: vec![NO_LEVEL; len * max_path],
        }
    }

    /// Tokens `range` of every row, for a slice of a batch.
    pub fn rows(&self, range: std::ops::Range<usize>) -> TreePositions {
        TreePositions {
            max_path: self.max_path,
            depth: self.depth[range.clone()].to_vec(),
            path: self.path[range.start * self.max_path..range.end * self.max_path].to_vec(),
        }
    }
}

/// The one-hot slot of each level the encoding reads, from the token's node upward: level k
/// holds the child index of the k-th ancestor (k = 0: the node itself in its parent). Only
/// stored levels can be read: a path deeper than the shards' `max_path` starts higher up.
pub fn encoding_slots(path: &[u16], depth: u16, c: &TreeConfig) -> Vec<(usize, usize)> {
    if depth == 0 {
        return Vec::new();
    }
    path.iter()
        .rev()
        .take(c.max_depth)
        .enumerate()
        .map(|(k, &child)| (k, (child as usize).min(c.max_width - 1)))
        .collect()
}

/// The bias bucket of a query token at (`depth_q`, `path_q`) and a key token: steps up from the
/// query's node to the lowest common ancestor and down to the key's, each capped. Paths are
/// compared on their stored levels; below those, nodes count as different.
pub fn bias_bucket(
    (depth_q, path_q): (u16, &[u16]),
    (depth_k, path_k): (u16, &[u16]),
    c: &TreeConfig,
) -> usize {
    if depth_q == 0 || depth_k == 0 {
        return c.buckets() - 1;
    }
    let common = path_q
        .iter()
        .zip(path_k)
        .take_while(|(a, b)| a == b)
        .count();
    let up = (depth_q as usize - common).min(c.bias_max_steps);
    let down = (depth_k as usize - common).min(c.bias_max_steps);
    up * (c.bias_max_steps + 1) + down
}

/// The learned parts: the encoding's projection and decays, and a table per biased layer.
#[derive(Module, Debug)]
pub struct TreeModule {
    /// `[max_depth · max_width, d_model]`: the projection of the one-hot stack.
    pub proj: Option<Param<Tensor<2>>>,
    /// `[max_depth]`: the per-level weights.
    pub decay: Option<Param<Tensor<1>>>,
    /// `[n_heads, buckets]` per biased layer, in layer order.
    pub bias: Vec<Param<Tensor<2>>>,
    #[module(skip)]
    pub config: TreeConfig,
}

impl TreeModule {
    pub fn new(
        c: &TreeConfig,
        n_layers: usize,
        n_heads: usize,
        d_model: usize,
        device: &Device,
    ) -> Self {
        let (proj, decay) = if c.positions {
            // Zero, as the bias tables: the model starts as the dense one and learns how much
            // of the tree to add. A random projection (std `init_std`) sums up to `max_depth`
            // rows into every embedding, twice the token embedding's scale, and measured 0.11
            // bits/byte worse after the quickstart's 200 steps (docs/BENCHMARKS.md).
            let rows = c.max_depth * c.max_width;
            let proj = Tensor::zeros([rows, d_model], device);
            let decay: Vec<f32> = (0..c.max_depth).map(|k| 0.9f32.powi(k as i32)).collect();
            let decay = Tensor::from_data(TensorData::new(decay, [c.max_depth]), device);
            (
                Some(Param::from_tensor(proj)),
                Some(Param::from_tensor(decay)),
            )
        } else {
            (None, None)
        };
        let bias = (0..n_layers)
            .filter(|&i| c.biased(i))
            .map(|_| Param::from_tensor(Tensor::zeros([n_heads, c.buckets()], device)))
            .collect();
        TreeModule {
            proj,
            decay,
            bias,
            config: c.clone(),
        }
    }

    /// The encoding of the last `seq` tokens of each of `tree`'s `batch` rows (of `n_key`
    /// tokens: the cached ones and these), `[batch, seq, d_model]`; `None` without positions.
    pub fn encode(
        &self,
        tree: &TreePositions,
        batch: usize,
        seq: usize,
        n_key: usize,
    ) -> Option<Tensor<3>> {
        let (proj, decay) = (self.proj.as_ref()?, self.decay.as_ref()?);
        let c = &self.config;
        let (n, levels, width) = (batch * seq, c.max_depth, c.max_width);
        let device = proj.val().device();
        // One-hot stacks on the host, then weighted by the decays and projected in one matmul.
        let mut onehot = vec![0f32; n * levels * width];
        for b in 0..batch {
            for s in 0..seq {
                let (out, t) = (b * seq + s, b * n_key + n_key - seq + s);
                for (k, slot) in encoding_slots(tree.path_of(t), tree.depth[t], c) {
                    onehot[(out * levels + k) * width + slot] = 1.0;
                }
            }
        }
        let onehot = Tensor::<3>::from_data(TensorData::new(onehot, [n, levels, width]), &device);
        let weighted = onehot * decay.val().reshape([1, levels, 1]);
        let d = proj.val().dims()[1];
        Some(
            weighted
                .reshape([n, levels * width])
                .matmul(proj.val())
                .reshape([batch, seq, d]),
        )
    }

    /// Bucket ids (query-major within a row) of the last `seq` tokens of each of `tree`'s rows
    /// (of `n_key` tokens) as queries and every token as keys.
    pub fn buckets(
        &self,
        tree: &TreePositions,
        batch: usize,
        seq: usize,
        n_key: usize,
    ) -> BucketIds {
        let mut ids = Vec::with_capacity(batch * seq * n_key);
        for b in 0..batch {
            for q in n_key - seq..n_key {
                let tq = b * n_key + q;
                let pq = (tree.depth[tq], tree.path_of(tq));
                for k in 0..n_key {
                    let tk = b * n_key + k;
                    let pk = (tree.depth[tk], tree.path_of(tk));
                    // At most 65² + 1 buckets (`bias_max_steps` ≤ 64).
                    ids.push(bias_bucket(pq, pk, &self.config) as u16);
                }
            }
        }
        BucketIds {
            ids,
            batch,
            seq,
            keys: n_key,
        }
    }

    /// The `i`-th biased layer's bias: its table and the shared bucket ids.
    pub fn layer_bias(&self, i: usize, ids: &Arc<BucketIds>) -> TreeBias {
        TreeBias {
            table: self.bias[i].val(),
            ids: ids.clone(),
        }
    }
}

/// One layer's tree attention bias: `table[h, ids[b, q, k]]` on each attention score.
#[derive(Debug, Clone)]
pub struct TreeBias {
    /// `[heads, buckets]`.
    pub table: Tensor<2>,
    pub ids: Arc<BucketIds>,
}

impl TreeBias {
    /// The bias as one `[batch, heads, seq, keys]` tensor, for Burn's attention (the fused
    /// kernel reads the table and ids directly).
    pub fn dense(&self) -> Tensor<4> {
        let BucketIds {
            ids,
            batch,
            seq,
            keys,
        } = &*self.ids;
        let heads = self.table.dims()[0];
        let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let idx =
            Tensor::<1, Int>::from_data(TensorData::new(idx, [ids.len()]), &self.table.device());
        self.table
            .clone()
            .select(1, idx)
            .reshape([heads, *batch, *seq, *keys])
            .swap_dims(0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TreeConfig {
        TreeConfig {
            max_depth: 3,
            max_width: 4,
            bias_max_steps: 2,
            ..TreeConfig::default()
        }
    }

    #[test]
    fn slots_read_the_path_upward_capped() {
        let c = cfg();
        // Path root → node: 0, 7, 2, 1 (depth 4): levels upward 1, 2, then 7 capped to 3.
        assert_eq!(
            encoding_slots(&[0, 7, 2, 1], 4, &c),
            vec![(0, 1), (1, 2), (2, 3)]
        );
        assert!(encoding_slots(&[], 0, &c).is_empty());
    }

    #[test]
    fn buckets_count_steps_to_the_common_ancestor() {
        let c = cfg();
        let b = |q: &[u16], k: &[u16]| bias_bucket((q.len() as u16, q), (k.len() as u16, k), &c);
        // Same node: (0, 0).
        assert_eq!(b(&[0, 1], &[0, 1]), 0);
        // Sibling: one up, one down.
        assert_eq!(b(&[0, 1], &[0, 2]), 3 + 1);
        // Ancestor of the query: two up, none down.
        assert_eq!(b(&[0, 1, 5], &[0]), 2 * 3);
        // Far apart: capped at 2 and 2.
        assert_eq!(b(&[1, 1, 1, 1], &[2, 2, 2]), 2 * 3 + 2);
        // No position on either side: the last bucket.
        assert_eq!(bias_bucket((0, &[]), (2, &[0, 1]), &c), c.buckets() - 1);
    }

    /// Two rows of three tokens: paths of several depths, one token without a position.
    fn positions() -> TreePositions {
        let rows: [(u16, &[u16]); 6] = [
            (2, &[0, 3]),
            (4, &[0, 9, 2, 1]),
            (0, &[]),
            (1, &[1]),
            (3, &[1, 0, 0]),
            (5, &[1, 0, 0]), // deeper than the 3 stored levels
        ];
        let mut t = TreePositions {
            max_path: 3,
            ..TreePositions::default()
        };
        for (d, p) in rows {
            t.push(d, p);
        }
        t
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// The encoding is Σ_k decay[k] · proj[k·W + slot_k] per token, computed here by brute force
    /// from the parameters; the bias is the table's entry of each pair's bucket.
    #[test]
    fn encoding_and_bias_match_brute_force() {
        let device = Device::flex();
        let c = cfg();
        let (heads, d) = (2, 5);
        let mut m = TreeModule::new(&c, 2, heads, d, &device);
        m.proj = Some(Param::from_tensor(Tensor::random(
            [c.max_depth * c.max_width, d],
            burn::tensor::Distribution::Normal(0.0, 0.5),
            &device,
        )));
        // Distinct decays and a non-zero table, so every weight shows.
        m.decay = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 0.5, -0.25], [3]),
            &device,
        )));
        let table: Vec<f32> = (0..heads * c.buckets()).map(|i| i as f32 * 0.1).collect();
        m.bias[0] = Param::from_tensor(Tensor::from_data(
            TensorData::new(table.clone(), [heads, c.buckets()]),
            &device,
        ));
        let t = positions();
        let enc = host(m.encode(&t, 2, 3, 3).unwrap());
        let proj = host(m.proj.as_ref().unwrap().val());
        let decay = [1.0f32, 0.5, -0.25];
        for tok in 0..6 {
            let mut want = vec![0f32; d];
            for (k, slot) in encoding_slots(t.path_of(tok), t.depth[tok], &c) {
                let row = k * c.max_width + slot;
                for j in 0..d {
                    want[j] += decay[k] * proj[row * d + j];
                }
            }
            for j in 0..d {
                let got = enc[tok * d + j];
                assert!(
                    (got - want[j]).abs() < 1e-6,
                    "token {tok} dim {j}: {got} vs {}",
                    want[j]
                );
            }
        }
        let ids = Arc::new(m.buckets(&t, 2, 3, 3));
        let bias = host(m.layer_bias(0, &ids).dense());
        let ids = &ids.ids;
        for b in 0..2 {
            for h in 0..heads {
                for q in 0..3 {
                    for k in 0..3 {
                        let (tq, tk) = (b * 3 + q, b * 3 + k);
                        let bucket = bias_bucket(
                            (t.depth[tq], t.path_of(tq)),
                            (t.depth[tk], t.path_of(tk)),
                            &c,
                        );
                        assert_eq!(ids[(b * 3 + q) * 3 + k], bucket as u16);
                        let got = bias[((b * heads + h) * 3 + q) * 3 + k];
                        assert_eq!(got, table[h * c.buckets() + bucket], "b{b} h{h} q{q} k{k}");
                    }
                }
            }
        }
    }

    /// Decoding after a KV cache asks for the last tokens of each row as queries against every
    /// key: the same encodings and buckets as those tokens' rows of the whole-row computation.
    #[test]
    fn queries_after_a_cache_match_the_whole_rows() {
        let device = Device::flex();
        let c = cfg();
        let d = 5;
        let mut m = TreeModule::new(&c, 1, 2, d, &device);
        m.proj = Some(Param::from_tensor(Tensor::random(
            [c.max_depth * c.max_width, d],
            burn::tensor::Distribution::Normal(0.0, 0.5),
            &device,
        )));
        let t = positions();
        let whole = host(m.encode(&t, 2, 3, 3).unwrap());
        let last = host(m.encode(&t, 2, 1, 3).unwrap());
        let (whole_ids, last_ids) = (m.buckets(&t, 2, 3, 3), m.buckets(&t, 2, 1, 3));
        for b in 0..2 {
            assert_eq!(
                last[b * d..(b + 1) * d],
                whole[(b * 3 + 2) * d..(b * 3 + 3) * d]
            );
            assert_eq!(
                last_ids.ids[b * 3..(b + 1) * 3],
                whole_ids.ids[(b * 3 + 2) * 3..(b * 3 + 3) * 3]
            );
        }
    }
}
