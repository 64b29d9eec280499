//! Rows of packed tokens from the pipeline's shards, in a seeded order that a checkpoint can
//! resume exactly: the position is `(epoch, cursor)` and each epoch's permutation is a function of
//! the seed and the epoch alone.

use anvil_data::DataError;
use anvil_data::shard::Split;
use anvil_data::tokenize::{MANIFEST, list_token_shards, read_manifest, read_token_shard};
use anvil_models::{TokenBatch, TreePositions};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Every row of one split, in memory (the quickstart's stdlib is 8.4 M tokens: 50 MB).
pub struct TokenRows {
    pub seq_len: usize,
    input_ids: Vec<u32>,
    segment_ids: Vec<u16>,
    /// Per token, whether it is a training target; `None` (every token) unless the shards carry
    /// a `loss_mask` column, as supervised fine-tuning data does.
    loss_mask: Option<Vec<bool>>,
    /// Per token, its tree position (depth, `max_path` path entries), for tree models.
    tree: Option<TreePositions>,
}

impl TokenRows {
    /// [`TokenRows::load`] with the tokens' tree positions, which shards tokenized without
    /// `ast` lack (refused naming the key).
    pub fn load_with_tree(dir: &Path, split: Split, vocab_size: usize) -> anvil_data::Result<Self> {
        Self::read(dir, split, vocab_size, true)
    }

    /// The rows `model` reads: with the tokens' tree positions for a tree model (and a denoiser
    /// that masks whole syntax nodes), without otherwise.
    pub fn load_for(
        dir: &Path,
        split: Split,
        model: &anvil_models::LlamaConfig,
    ) -> anvil_data::Result<Self> {
        Self::read(dir, split, model.vocab_size, model.reads_tree_positions())
    }

    /// Every row of `split` in the tokenized folder `dir`, for a model with `vocab_size` tokens.
    /// Shards that disagree with `tokens.json` (other row lengths, ids past its vocabulary) or a
    /// vocabulary larger than the model's are refused here, naming the file, instead of
    /// indexing past the embedding table mid-run.
    pub fn load(dir: &Path, split: Split, vocab_size: usize) -> anvil_data::Result<Self> {
        Self::read(dir, split, vocab_size, false)
    }

    fn read(dir: &Path, split: Split, vocab_size: usize, tree: bool) -> anvil_data::Result<Self> {
        let manifest = read_manifest(dir)?;
        let max_path = match (tree, manifest.ast_max_path) {
            (false, _) => None,
            (true, Some(m)) => Some(m),
            (true, None) => {
                return Err(DataError::invalid(
                    dir.join(MANIFEST),
                    "a tree model reads per-token AST positions, and these shards have none: \
                     tokenize with `data.tokenize.ast = true`",
                ));
            }
        };
        if manifest.vocab_size > vocab_size {
            return Err(DataError::invalid(
                dir.join(MANIFEST),
                format!(
                    "tokenized with a {}-token vocabulary, more than the model's {vocab_size}",
                    manifest.vocab_size
                ),
            ));
        }
        let mut rows = TokenRows {
            seq_len: manifest.seq_len,
            input_ids: Vec::new(),
            segment_ids: Vec::new(),
            // Expected per tokens.json's columns, so every shard must agree.
            loss_mask: manifest
                .columns
                .iter()
                .any(|c| c == "loss_mask")
                .then(Vec::new),
            tree: max_path.map(|max_path| TreePositions {
                max_path,
                ..TreePositions::default()
            }),
        };
        for shard in list_token_shards(dir, split)? {
            let s = read_token_shard(&shard)?;
            if s.seq_len != manifest.seq_len {
                return Err(DataError::parquet(
                    &shard,
                    format!(
                        "rows of {} tokens, but tokens.json says seq_len = {}",
                        s.seq_len, manifest.seq_len
                    ),
                ));
            }
            if let Some(i) = s
                .input_ids
                .iter()
                .position(|&t| t as usize >= manifest.vocab_size)
            {
                return Err(DataError::parquet(
                    &shard,
                    format!(
                        "row {}: token id {} is outside the vocabulary of {} in tokens.json",
                        i / s.seq_len,
                        s.input_ids[i],
                        manifest.vocab_size
                    ),
                ));
            }
            match (&mut rows.loss_mask, &s.loss_mask) {
                (Some(all), Some(m)) => all.extend(m.iter().map(|&v| v != 0)),
                (None, None) => {}
                (_, m) => {
                    return Err(DataError::parquet(
                        &shard,
                        if m.is_some() {
                            "has a loss_mask column that tokens.json does not list"
                        } else {
                            "has no loss_mask column, but tokens.json lists one"
                        },
                    ));
                }
            }
            if let Some(tree) = &mut rows.tree {
                match (&s.ast_depth, &s.ast_path) {
                    (Some(d), Some(p)) if s.ast_max_path == tree.max_path => {
                        tree.depth.extend_from_slice(d);
                        tree.path.extend_from_slice(p);
                    }
                    _ => {
                        return Err(DataError::parquet(
                            &shard,
                            "no ast_depth/ast_path columns of the manifest's ast_max_path",
                        ));
                    }
                }
            }
            rows.input_ids.extend_from_slice(&s.input_ids);
            rows.segment_ids.extend_from_slice(&s.segment_ids);
        }
        Ok(rows)
    }

    pub fn len(&self) -> usize {
        self.input_ids.len().checked_div(self.seq_len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether batches carry a loss mask (supervised fine-tuning data).
    pub fn has_loss_mask(&self) -> bool {
        self.loss_mask.is_some()
    }

    /// The rows `idx` as one batch.
    pub fn batch(&self, idx: &[usize]) -> TokenBatch {
        let t = self.seq_len;
        let mut input_ids = Vec::with_capacity(idx.len() * t);
        let mut segment_ids = Vec::with_capacity(idx.len() * t);
        let mut loss_mask = self
            .loss_mask
            .as_ref()
            .map(|_| Vec::with_capacity(idx.len() * t));
        for &r in idx {
            input_ids.extend_from_slice(&self.input_ids[r * t..(r + 1) * t]);
            segment_ids.extend_from_slice(&self.segment_ids[r * t..(r + 1) * t]);
            if let (Some(out), Some(all)) = (loss_mask.as_mut(), &self.loss_mask) {
                out.extend_from_slice(&all[r * t..(r + 1) * t]);
            }
        }
        let tree = self.tree.as_ref().map(|all| {
            let mut out = TreePositions {
                max_path: all.max_path,
                ..TreePositions::default()
            };
            for &r in idx {
                let rows = all.rows(r * t..(r + 1) * t);
                out.depth.extend_from_slice(&rows.depth);
                out.path.extend_from_slice(&rows.path);
            }
            out
        });
        TokenBatch {
            input_ids,
            segment_ids: Some(segment_ids),
            loss_mask,
            batch: idx.len(),
            seq_len: t,
            tree,
            position_targets: None,
        }
    }
}

/// Where the training stream is; saved in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataPosition {
    pub epoch: u64,
    /// Rows of this epoch's permutation already served.
    pub cursor: usize,
}

/// Shuffled rows, epoch after epoch.
pub struct RowStream {
    seed: u64,
    shuffle: bool,
    n_rows: usize,
    pub position: DataPosition,
    order: Vec<usize>,
}

impl RowStream {
    pub fn new(n_rows: usize, seed: u64, position: DataPosition) -> Self {
        let mut s = Self {
            seed,
            shuffle: true,
            n_rows,
            position,
            order: Vec::new(),
        };
        s.order = s.permutation(position.epoch);
        s
    }

    /// Rows in their own order, epoch after epoch (a benchmark that must feed another trainer
    /// the same prompts).
    pub fn in_order(mut self) -> Self {
        self.shuffle = false;
        self.order = self.permutation(self.position.epoch);
        self
    }

    fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n_rows).collect();
        if !self.shuffle {
            return order;
        }
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        order
    }

    /// The next `n` row indices (crossing into the next epoch when this one runs out).
    pub fn next_rows(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.position.cursor == self.n_rows {
                self.position.epoch += 1;
                self.position.cursor = 0;
                self.order = self.permutation(self.position.epoch);
            }
            out.push(self.order[self.position.cursor]);
            self.position.cursor += 1;
        }
        out
    }
}
