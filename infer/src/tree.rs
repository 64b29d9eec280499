//! Tree positions while decoding, a tree model's second input (`arch = "tree"`). Each batch row
//! keeps the incremental parse of its text so far ([`DocPositions`], the very code that wrote
//! the training shards' positions) and the position of every token it holds, so each new token
//! is placed from the text before and including it, as in training. Positions never change once
//! given (they only look back), which is what lets the KV cache keep its keys: the bias of a new
//! token against a cached one needs only the two positions.

use crate::InferError;
use crate::generate::Generator;
use anvil_data::lang::Lang;
use anvil_data::parse::DocPositions;
use anvil_models::TreePositions;

/// How a tree model places tokens: its language and the shards' path truncation.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    lang: Lang,
    max_path: usize,
}

/// One batch row: its parse and the positions of its keys (padding included, unplaced).
#[derive(Clone)]
struct Row {
    doc: DocPositions,
    keys: TreePositions,
}

/// The positions of every row of a batch being decoded.
pub struct TreeRows {
    rows: Vec<Row>,
}

impl Placement {
    /// `None` for a model without tree positions; an error for one whose checkpoint does not
    /// say how its positions were computed.
    pub fn of(config: &anvil_models::LlamaConfig) -> Result<Option<Self>, InferError> {
        let Some(tree) = &config.tree else {
            return Ok(None);
        };
        let lang = anvil_data::lang::parse_one(&tree.lang)
            .map_err(|e| InferError::Param(format!("the model's `tree.lang`: {e}")))?;
        let max_path = tree.ast_max_path.ok_or_else(|| {
            InferError::Param(
                "the tree model's config has no `tree.ast_max_path` (the data's path levels, \
                 recorded when it trains): retrain it with this version"
                    .into(),
            )
        })?;
        Ok(Some(Placement { lang, max_path }))
    }
}

impl TreeRows {
    /// Rows for `contexts`, each left-padded to `width` tokens.
    pub fn prefill(
        g: &Generator,
        placement: Placement,
        contexts: &[&[u32]],
        width: usize,
    ) -> Result<Self, InferError> {
        let rows = contexts
            .iter()
            .map(|c| {
                let mut row = Row {
                    doc: DocPositions::new(placement.lang, "", placement.max_path),
                    keys: TreePositions::unplaced(placement.max_path, width - c.len()),
                };
                row.push(g, c)?;
                Ok(row)
            })
            .collect::<Result<_, InferError>>()?;
        Ok(TreeRows { rows })
    }

    /// Appends one token to each row.
    pub fn push(&mut self, g: &Generator, next: &[u32]) -> Result<(), InferError> {
        for (row, &t) in self.rows.iter_mut().zip(next) {
            row.push(g, &[t])?;
        }
        Ok(())
    }

    /// Keeps rows `idx` (in that order, repeats allowed), as the KV caches do.
    pub fn select(&mut self, idx: &[usize]) {
        self.rows = idx.iter().map(|&i| self.rows[i].clone()).collect();
    }

    /// Every row's key positions, row after row (`[batch · keys]`).
    pub fn batch(&self) -> TreePositions {
        let max_path = self.rows.first().map_or(1, |r| r.keys.max_path);
        let mut all = TreePositions {
            max_path,
            ..TreePositions::default()
        };
        for r in &self.rows {
            all.depth.extend_from_slice(&r.keys.depth);
            all.path.extend_from_slice(&r.keys.path);
        }
        all
    }
}

impl Generator {
    /// Tree positions for a batch of `contexts` left-padded to `width`, or `None` for a model
    /// that reads none.
    pub fn tree_rows(
        &self,
        contexts: &[&[u32]],
        width: usize,
    ) -> Result<Option<TreeRows>, InferError> {
        match Placement::of(&self.model.config)? {
            Some(p) => Ok(Some(TreeRows::prefill(self, p, contexts, width)?)),
            None => Ok(None),
        }
    }
}

impl Row {
    fn push(&mut self, g: &Generator, ids: &[u32]) -> Result<(), InferError> {
        let table = g.token_bytes().ok_or_else(|| {
            InferError::Param(
                "a tree model places tokens by their bytes: its tokenizer must be byte-level"
                    .into(),
            )
        })?;
        for &id in ids {
            let f = self.doc.push(id, table.text(id));
            self.keys.push(f.depth, &f.path);
        }
        Ok(())
    }
}
