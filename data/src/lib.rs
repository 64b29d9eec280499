//! Anvil's corpus pipeline: raw source trees in, clean training data out.
//!
//! `prepare` walks sources, parses every file with tree-sitter, filters, deduplicates (exact and
//! MinHash near-dup), detects licenses, splits train/val by content hash and writes Parquet
//! shards plus a manifest. `tokenizer` trains a byte-level BPE; `tokenize` packs the corpus into
//! fixed-length token sequences (with document boundaries, optional FIM and per-token AST facts).
//! `sft` packs prompt/completion pairs with a loss mask for supervised fine-tuning. `synth`
//! generates verifiable Python tasks in HumanEval's shape; `problems` reads and writes that shape,
//! HumanEval itself included.

pub mod atomic;
pub mod dedup;
pub mod error;
pub mod filter;
pub mod lang;
pub mod license;
pub mod manifest;
pub mod minhash_index;
pub mod parse;
pub mod pipeline;
pub mod prepare;
pub mod problems;
pub mod progress;
pub mod sft;
pub mod shard;
pub mod source;
pub mod synth;
pub mod tokenize;
pub mod tokenizer;

pub use error::{DataError, Result};
