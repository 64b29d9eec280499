//! `anvil data tokenize`: a prepared corpus in, packed fixed-length training sequences out.
//!
//! Every document is encoded as plain text (special-token strings in files stay ordinary bytes),
//! optionally rearranged for fill-in-the-middle (Bavarian et al. 2022, PSM and SPM orders), and
//! followed by `<|endoftext|>`. Documents are concatenated in corpus order (shards sorted, rows in
//! order) and the stream is cut into rows of exactly `seq_len` tokens, documents spanning row
//! boundaries (GPT-style packing). Per token we also store:
//!
//! * `segment_ids` (u16): the 1-based index of the token's document within its row (a document
//!   continued from the previous row is 1 again), 0 only for the `<|pad|>` tail of the very last
//!   row. Attend only where segment ids are equal and non-zero; mask the loss where they are 0.
//! * with `--ast`: `ast_depth` (u16) and `ast_path` (`ast_max_path` u16 per token, row-major,
//!   padded with [`NO_LEVEL`]): the token's tree position — the tree-sitter facts at its first
//!   byte in the parse of its document **up to the token's end**
//!   ([`crate::parse::PrefixPositions`]), the definition a decoder can compute too, token by
//!   token. Special tokens, padding and fill-in-the-middle documents (whose text is out of
//!   order) get depth 0 and an empty path.
//!
//! Output: `{split}-{i:05}-of-{n:05}.parquet` shards (one row per sequence; columns are
//! `List<UInt32>` / `List<UInt16>`), a copy of `tokenizer.json`, and `tokens.json`, written last:
//! a directory without it is an unfinished run and readers refuse it. Output is deterministic: the
//! same corpus, tokenizer and config give byte-identical shards, whatever the thread count.

use crate::atomic;
use crate::error::{DataError, Result};
use crate::parse::DocPositions;
use crate::shard::{self, Record, Split};
use crate::tokenizer::{self, encode_text};
use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, UInt8Type, UInt16Type, UInt32Type};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, UInt8Array, UInt16Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// The manifest, written last.
pub const MANIFEST: &str = "tokens.json";
/// The copy of the tokenizer the shards were encoded with.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// `ast_path` filler for "no node at this level".
pub const NO_LEVEL: u16 = u16::MAX;
/// Documents encoded in parallel per batch: bounds memory while keeping both cores busy.
const DOC_BATCH: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizeConfig {
    /// Tokens per row.
    pub seq_len: usize,
    /// Share of documents turned into fill-in-the-middle examples.
    pub fim_rate: f64,
    /// Share of FIM documents in SPM order (the rest are PSM).
    pub fim_spm_rate: f64,
    /// Store per-token AST facts (`ast_depth`, `ast_path`).
    pub ast: bool,
    /// Levels of the child-index path kept per token.
    pub ast_max_path: usize,
    /// Seeds the per-document FIM decisions (mixed with each document's content hash).
    pub seed: u64,
    /// Rows per output shard.
    pub rows_per_shard: usize,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig {
            seq_len: 1024,
            fim_rate: 0.0,
            fim_spm_rate: 0.5,
            ast: false,
            ast_max_path: 8,
            seed: 0,
            rows_per_shard: 8192,
        }
    }
}

impl TokenizeConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Config(m));
        // Segment ids are u16 and a row holds at most seq_len documents.
        if !(8..=u16::MAX as usize).contains(&self.seq_len) {
            return bad(format!(
                "--seq-len {} must be between 8 and {}",
                self.seq_len,
                u16::MAX
            ));
        }
        for (flag, v) in [
            ("--fim-rate", self.fim_rate),
            ("--fim-spm-rate", self.fim_spm_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{flag} {v} must be between 0 and 1"));
            }
        }
        if self.ast && !(1..=64).contains(&self.ast_max_path) {
            return bad(format!(
                "--ast-max-path {} must be between 1 and 64",
                self.ast_max_path
            ));
        }
        if !(1..=1 << 20).contains(&self.rows_per_shard) {
            return bad(format!(
                "rows_per_shard must be in 1..=1048576, got {}",
                self.rows_per_shard
            ));
        }
        Ok(())
    }
}

/// The special token ids, spelled out for readers of `tokens.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub eot: u32,
    pub pad: u32,
    pub mask: u32,
    pub fim_prefix: u32,
    pub fim_suffix: u32,
    pub fim_middle: u32,
    pub file_sep: u32,
}

impl Default for SpecialIds {
    fn default() -> Self {
        use tokenizer::*;
        SpecialIds {
            eot: EOT_ID,
            pad: PAD_ID,
            mask: MASK_ID,
            fim_prefix: FIM_PREFIX_ID,
            fim_suffix: FIM_SUFFIX_ID,
            fim_middle: FIM_MIDDLE_ID,
            file_sep: FILE_SEP_ID,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    pub n_docs: u64,
    /// Bytes of document content.
    pub n_bytes: u64,
    /// Real (non-pad) tokens, the inserted special tokens included.
    pub n_tokens: u64,
    pub n_rows: u64,
    pub n_pad: u64,
    pub n_fim_psm: u64,
    pub n_fim_spm: u64,
    /// Shard file names, in order.
    pub shards: Vec<String>,
}

/// `tokens.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizeManifest {
    pub anvil_version: String,
    pub seq_len: usize,
    /// Including the special tokens.
    pub vocab_size: usize,
    pub special_tokens: SpecialIds,
    /// File name of the tokenizer copy in this directory.
    pub tokenizer: String,
    /// xxh3-128 (hex) of that file's bytes.
    pub tokenizer_xxh3: String,
    /// Set when the shards carry AST columns.
    pub ast_max_path: Option<usize>,
    pub columns: Vec<String>,
    pub train: SplitStats,
    pub val: SplitStats,
    pub config: TokenizeConfig,
    /// Set for supervised fine-tuning data (shards with a `loss_mask` column); absent in corpus
    /// token folders, so their tokens.json is unchanged and older ones still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft: Option<crate::sft::SftStats>,
}

impl TokenizeManifest {
    pub fn split(&self, split: Split) -> &SplitStats {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// Tokenize both splits of `corpus_dir` into `out_dir` (see the module docs for the format).
pub fn tokenize_corpus(
    corpus_dir: &Path,
    tokenizer_path: &Path,
    out_dir: &Path,
    cfg: &TokenizeConfig,
    overwrite: bool,
) -> Result<TokenizeManifest> {
    cfg.validate()?;
    // Everything that can fail on bad inputs is checked before `out_dir` is (re)created, and the
    // tokenizer is held in memory: `--overwrite` may delete the directory it lives in.
    let tok_bytes = std::fs::read(tokenizer_path).map_err(|e| DataError::io(tokenizer_path, e))?;
    let tok = tokenizer::from_bytes(&tok_bytes, tokenizer_path)?;
    // Tree positions parse the documents' bytes token by token.
    let bytes = match cfg.ast {
        false => Vec::new(),
        true => tokenizer::token_bytes(&tok, tok.get_vocab_size(true)).ok_or_else(|| {
            DataError::invalid(
                tokenizer_path,
                "--ast needs a byte-level tokenizer (its tokens' bytes)",
            )
        })?,
    };
    let enc = Encoder {
        tok: &tok,
        bytes: &bytes,
    };
    let train_in = shard::list_shards(corpus_dir, Split::Train)?;
    let val_in = shard::list_shards(corpus_dir, Split::Val)?;
    let mut n_docs = 0;
    for p in train_in.iter().chain(&val_in) {
        n_docs += shard_num_rows(p)?;
    }

    let staged = atomic::StagedDir::new(out_dir, overwrite, &[corpus_dir, tokenizer_path])?;
    // Build in the staging directory; `commit` moves it to `out_dir` once tokens.json is written.
    let out_dir = staged.path();
    atomic::write(&out_dir.join(TOKENIZER_FILE), &tok_bytes)?;
    let pb = crate::progress::bar(n_docs, "tokenize", false);
    let train = tokenize_split(&enc, &train_in, Split::Train, out_dir, cfg, &pb)?;
    let val = tokenize_split(&enc, &val_in, Split::Val, out_dir, cfg, &pb)?;
    pb.finish_and_clear();

    let mut columns = vec!["input_ids", "segment_ids"];
    if cfg.ast {
        columns.extend(["ast_depth", "ast_path"]);
    }
    let manifest = TokenizeManifest::new(&tok, &tok_bytes, cfg, &columns, (train, val));
    atomic::write_json(&out_dir.join(MANIFEST), &manifest)?;
    staged.commit()?;
    Ok(manifest)
}

impl TokenizeManifest {
    /// The manifest of shards written with `tok` (whose file bytes are `tok_bytes`) and `cfg`,
    /// with these columns and the two splits' stats.
    pub(crate) fn new(
        tok: &Tokenizer,
        tok_bytes: &[u8],
        cfg: &TokenizeConfig,
        columns: &[&str],
        (train, val): (SplitStats, SplitStats),
    ) -> Self {
        TokenizeManifest {
            anvil_version: env!("CARGO_PKG_VERSION").to_string(),
            seq_len: cfg.seq_len,
            vocab_size: tok.get_vocab_size(true),
            special_tokens: SpecialIds::default(),
            tokenizer: TOKENIZER_FILE.to_string(),
            tokenizer_xxh3: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(tok_bytes)),
            ast_max_path: cfg.ast.then_some(cfg.ast_max_path),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            train,
            val,
            config: cfg.clone(),
            sft: None,
        }
    }
}

fn shard_num_rows(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let b =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::parquet(path, e))?;
    Ok(b.metadata().file_metadata().num_rows().max(0) as u64)
}

/// The tokenizer and, for tree positions, its tokens' bytes.
struct Encoder<'a> {
    tok: &'a Tokenizer,
    bytes: &'a [Box<[u8]>],
}

fn tokenize_split(
    enc: &Encoder,
    inputs: &[PathBuf],
    split: Split,
    out_dir: &Path,
    cfg: &TokenizeConfig,
    pb: &indicatif::ProgressBar,
) -> Result<SplitStats> {
    let mut stats = SplitStats::default();
    let mut packer = Packer::new(cfg, ShardSink::new(out_dir, split, cfg));
    for path in inputs {
        let records = shard::read_shard(path)?;
        for batch in records.chunks(DOC_BATCH) {
            // Parallel encode, in-order collect: the packed stream never depends on scheduling.
            let docs: Vec<DocTokens> = batch
                .par_iter()
                .map(|r| {
                    encode_doc(enc, r, cfg)
                        .map_err(|e| DataError::invalid(path, format!("{}: {e}", r.path)))
                })
                .collect::<Result<_>>()?;
            for (rec, doc) in batch.iter().zip(&docs) {
                stats.n_docs += 1;
                stats.n_bytes += rec.content.len() as u64;
                match doc.kind {
                    DocKind::Plain => {}
                    DocKind::Psm => stats.n_fim_psm += 1,
                    DocKind::Spm => stats.n_fim_spm += 1,
                }
                packer.push(doc)?;
            }
            pb.inc(batch.len() as u64);
        }
    }
    let (n_tokens, n_pad, rows, tmp_files) = packer.finish()?;
    stats.n_tokens = n_tokens;
    stats.n_pad = n_pad;
    stats.n_rows = rows;
    stats.shards = name_shards(out_dir, split, &tmp_files)?;
    Ok(stats)
}

/// Only once a split is written is its shard count known: give the temp files their final names.
pub(crate) fn name_shards(
    out_dir: &Path,
    split: Split,
    tmp_files: &[PathBuf],
) -> Result<Vec<String>> {
    let n = tmp_files.len();
    let mut names = Vec::with_capacity(n);
    for (i, tmp) in tmp_files.iter().enumerate() {
        let name = shard::shard_name(split, i, n);
        let dest = out_dir.join(&name);
        std::fs::rename(tmp, &dest).map_err(|e| DataError::io(&dest, e))?;
        names.push(name);
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// One document

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum DocKind {
    #[default]
    Plain,
    Psm,
    Spm,
}

/// One document's tokens (EOT included) and, with `--ast`, their facts.
#[derive(Default)]
struct DocTokens {
    kind: DocKind,
    ids: Vec<u32>,
    /// One per token (empty without `--ast`).
    depth: Vec<u16>,
    /// `ast_max_path` per token (empty without `--ast`).
    path: Vec<u16>,
}

/// Byte offset of the `k`-th char boundary (`k == n_chars` is the end).
fn char_boundary(text: &str, k: usize) -> usize {
    text.char_indices().nth(k).map_or(text.len(), |(i, _)| i)
}

fn encode_doc(enc: &Encoder, rec: &Record, cfg: &TokenizeConfig) -> Result<DocTokens> {
    use tokenizer::{EOT_ID, FIM_MIDDLE_ID, FIM_PREFIX_ID, FIM_SUFFIX_ID};
    let text = rec.content.as_str();
    // The document's own RNG, from `seed` and its content hash: its FIM decisions do not depend
    // on its position, the thread that encodes it or what else is in the corpus.
    let doc_seed = xxhash_rust::xxh3::xxh3_64_with_seed(rec.content_hash.as_bytes(), cfg.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(doc_seed);
    let kind = if cfg.fim_rate > 0.0 && rng.random_bool(cfg.fim_rate) {
        if rng.random_bool(cfg.fim_spm_rate) {
            DocKind::Spm
        } else {
            DocKind::Psm
        }
    } else {
        DocKind::Plain
    };
    // A FIM document starts with its FIM token, which leaves its rearranged text unplaced.
    let pos = cfg
        .ast
        .then(|| DocPositions::new(rec.lang, &rec.path, cfg.ast_max_path));
    let mut b = DocBuilder {
        tok: enc.tok,
        bytes: enc.bytes,
        pos,
        max_path: cfg.ast.then_some(cfg.ast_max_path),
        out: DocTokens {
            kind,
            ..Default::default()
        },
    };
    if kind == DocKind::Plain {
        b.text(text)?;
    } else {
        // Two uniform cut points over char positions 0..=n_chars (Bavarian et al. 2022).
        let n_chars = text.chars().count();
        let (c1, c2) = (rng.random_range(0..=n_chars), rng.random_range(0..=n_chars));
        let (a, z) = (
            char_boundary(text, c1.min(c2)),
            char_boundary(text, c1.max(c2)),
        );
        let (prefix, middle, suffix) = (&text[..a], &text[a..z], &text[z..]);
        // Parts are encoded separately (tokens never straddle a cut); `base` maps each part's
        // offsets back into the original file for the AST facts.
        if kind == DocKind::Psm {
            b.special(FIM_PREFIX_ID);
            b.text(prefix)?;
            b.special(FIM_SUFFIX_ID);
            b.text(suffix)?;
            b.special(FIM_MIDDLE_ID);
            b.text(middle)?;
        } else {
            // SPM as in the paper: `<PRE> <SUF> suffix <MID> prefix middle`.
            b.special(FIM_PREFIX_ID);
            b.special(FIM_SUFFIX_ID);
            b.text(suffix)?;
            b.special(FIM_MIDDLE_ID);
            b.text(prefix)?;
            b.text(middle)?;
        }
    }
    b.special(EOT_ID);
    Ok(b.out)
}

struct DocBuilder<'a> {
    tok: &'a Tokenizer,
    bytes: &'a [Box<[u8]>],
    pos: Option<DocPositions>,
    /// `Some` with `--ast`.
    max_path: Option<usize>,
    out: DocTokens,
}

impl DocBuilder<'_> {
    fn special(&mut self, id: u32) {
        self.push_position(id);
        self.out.ids.push(id);
    }

    /// Append `part` (of the original file).
    fn text(&mut self, part: &str) -> Result<()> {
        let enc = encode_text(self.tok, part)?;
        for &id in &enc.ids {
            self.push_position(id);
        }
        self.out.ids.extend_from_slice(&enc.ids);
        Ok(())
    }

    /// With `--ast`, token `id`'s tree position, path padded to `ast_max_path`.
    fn push_position(&mut self, id: u32) {
        let (Some(m), Some(pos)) = (self.max_path, &mut self.pos) else {
            return;
        };
        let f = pos.push(id, self.bytes.get(id as usize).map_or(&[], |b| b));
        self.out.depth.push(f.depth);
        let n = f.path.len().min(m);
        self.out.path.extend_from_slice(&f.path[..n]);
        self.out.path.extend(std::iter::repeat_n(NO_LEVEL, m - n));
    }
}

// ---------------------------------------------------------------------------------------------
// Packing and writing

/// Rows of one output shard, flat and row-major (`path` has `ast_max_path` values per token;
/// `depth` and `path` stay empty without `--ast`, `mask` without a loss mask).
#[derive(Default)]
pub(crate) struct Rows {
    pub(crate) ids: Vec<u32>,
    pub(crate) seg: Vec<u16>,
    pub(crate) depth: Vec<u16>,
    pub(crate) path: Vec<u16>,
    /// 1 where the token is a training target (SFT completions), 0 elsewhere.
    pub(crate) mask: Vec<u8>,
}

/// Packs documents into rows of `seq_len` tokens. The row being filled is the tail of `rows`
/// past the last multiple of `seq_len`; full shards go to the sink.
struct Packer<'a> {
    seq_len: usize,
    max_path: Option<usize>,
    rows_per_shard: usize,
    rows: Rows,
    n_tokens: u64,
    n_rows: u64,
    sink: ShardSink<'a>,
}

impl<'a> Packer<'a> {
    fn new(cfg: &TokenizeConfig, sink: ShardSink<'a>) -> Self {
        let max_path = cfg.ast.then_some(cfg.ast_max_path);
        let (seq_len, rows_per_shard) = (cfg.seq_len, cfg.rows_per_shard);
        let rows = Rows::default();
        Packer {
            seq_len,
            max_path,
            rows_per_shard,
            rows,
            n_tokens: 0,
            n_rows: 0,
            sink,
        }
    }

    fn push(&mut self, doc: &DocTokens) -> Result<()> {
        let (n, rows) = (doc.ids.len(), &mut self.rows);
        let mut pos = 0;
        while pos < n {
            let in_row = rows.ids.len() % self.seq_len;
            let take = (self.seq_len - in_row).min(n - pos);
            // A document gets the next id in its row; one that continues into a new row, or
            // starts one, gets 1. Only the first chunk of a document can land mid-row.
            let seg = if in_row == 0 {
                1
            } else {
                rows.seg.last().map_or(1, |s| s + 1)
            };
            rows.ids.extend_from_slice(&doc.ids[pos..pos + take]);
            rows.seg.extend(std::iter::repeat_n(seg, take));
            if let Some(m) = self.max_path {
                rows.depth.extend_from_slice(&doc.depth[pos..pos + take]);
                rows.path
                    .extend_from_slice(&doc.path[pos * m..(pos + take) * m]);
            }
            pos += take;
            if rows.ids.len() == self.rows_per_shard * self.seq_len {
                self.n_rows += self.rows_per_shard as u64;
                self.sink.write(rows)?;
                *rows = Rows::default();
            }
        }
        self.n_tokens += n as u64;
        Ok(())
    }

    /// Pad the last row and write what is left. Returns (n_tokens, n_pad, n_rows, temp files).
    fn finish(mut self) -> Result<(u64, u64, u64, Vec<PathBuf>)> {
        let rows = &mut self.rows;
        let rem = rows.ids.len() % self.seq_len;
        let n_pad = if rem == 0 { 0 } else { self.seq_len - rem };
        rows.ids
            .extend(std::iter::repeat_n(tokenizer::PAD_ID, n_pad));
        rows.seg.extend(std::iter::repeat_n(0, n_pad));
        if let Some(m) = self.max_path {
            rows.depth.extend(std::iter::repeat_n(0, n_pad));
            rows.path.extend(std::iter::repeat_n(NO_LEVEL, n_pad * m));
        }
        if !rows.ids.is_empty() {
            self.n_rows += (rows.ids.len() / self.seq_len) as u64;
            self.sink.write(rows)?;
        }
        Ok((self.n_tokens, n_pad as u64, self.n_rows, self.sink.files))
    }
}

fn list_field(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, false))),
        false,
    )
}

fn token_schema(ast: bool, loss_mask: bool) -> SchemaRef {
    let mut fields = vec![
        list_field("input_ids", DataType::UInt32),
        list_field("segment_ids", DataType::UInt16),
    ];
    if ast {
        fields.push(list_field("ast_depth", DataType::UInt16));
        fields.push(list_field("ast_path", DataType::UInt16));
    }
    if loss_mask {
        fields.push(list_field("loss_mask", DataType::UInt8));
    }
    Arc::new(Schema::new(fields))
}

/// `n_rows` lists of `width` values each.
fn list_array(values: ArrayRef, n_rows: usize, width: usize) -> ArrayRef {
    let mut offsets = OffsetBufferBuilder::<i32>::new(n_rows);
    for _ in 0..n_rows {
        offsets.push_length(width);
    }
    let item = Arc::new(Field::new("item", values.data_type().clone(), false));
    Arc::new(ListArray::new(item, offsets.finish(), values, None))
}

/// Writes each full buffer of rows as one Parquet file under a temp name in `out_dir`.
pub(crate) struct ShardSink<'a> {
    out_dir: &'a Path,
    split: Split,
    seq_len: usize,
    max_path: Option<usize>,
    loss_mask: bool,
    /// The temp files written so far, in order (see [`name_shards`]).
    pub(crate) files: Vec<PathBuf>,
}

impl<'a> ShardSink<'a> {
    pub(crate) fn new(out_dir: &'a Path, split: Split, cfg: &TokenizeConfig) -> Self {
        let max_path = cfg.ast.then_some(cfg.ast_max_path);
        ShardSink {
            out_dir,
            split,
            seq_len: cfg.seq_len,
            max_path,
            loss_mask: false,
            files: Vec::new(),
        }
    }

    /// Also write `Rows::mask` as a `loss_mask` column.
    pub(crate) fn with_loss_mask(mut self) -> Self {
        self.loss_mask = true;
        self
    }

    pub(crate) fn write(&mut self, rows: &Rows) -> Result<()> {
        let (l, m) = (self.seq_len, self.max_path.unwrap_or(0));
        let n_rows = rows.ids.len() / l;
        // Batches small enough that i32 list offsets cannot overflow (the widest column is
        // ast_path at l*m values per row).
        let batch_rows = (i32::MAX as usize / (l * m.max(1))).clamp(1, 1024);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(batch_rows))
            .set_created_by(format!("anvil {}", env!("CARGO_PKG_VERSION")))
            .build();
        let i = self.files.len();
        let dest = self
            .out_dir
            .join(format!("{}-{i:05}.parquet", self.split.name()));
        let tmp = atomic::tmp_path(&dest);
        let schema = token_schema(self.max_path.is_some(), self.loss_mask);
        let res = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
            let mut w = ArrowWriter::try_new(File::create(&tmp)?, schema.clone(), Some(props))?;
            for r0 in (0..n_rows).step_by(batch_rows) {
                let r1 = (r0 + batch_rows).min(n_rows);
                let (tok, n) = (r0 * l..r1 * l, r1 - r0);
                let ids = UInt32Array::from(rows.ids[tok.clone()].to_vec());
                let seg = UInt16Array::from(rows.seg[tok.clone()].to_vec());
                let mut cols = vec![
                    list_array(Arc::new(ids), n, l),
                    list_array(Arc::new(seg), n, l),
                ];
                if m > 0 {
                    let d = UInt16Array::from(rows.depth[tok.clone()].to_vec());
                    let p = UInt16Array::from(rows.path[r0 * l * m..r1 * l * m].to_vec());
                    cols.push(list_array(Arc::new(d), n, l));
                    cols.push(list_array(Arc::new(p), n, l * m));
                }
                if self.loss_mask {
                    let mask = UInt8Array::from(rows.mask[tok].to_vec());
                    cols.push(list_array(Arc::new(mask), n, l));
                }
                w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
            }
            w.into_inner()?.sync_all()?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::parquet(&dest, e));
        }
        self.files.push(tmp);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading (for the trainer)

/// One token shard, row-major: row `r` is `input_ids[r * seq_len..(r + 1) * seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenShard {
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub segment_ids: Vec<u16>,
    pub ast_depth: Option<Vec<u16>>,
    /// `ast_max_path` values per token.
    pub ast_path: Option<Vec<u16>>,
    /// 0 without AST columns.
    pub ast_max_path: usize,
    /// Per token, 1 where it is a training target (SFT data); `None` when every token is.
    pub loss_mask: Option<Vec<u8>>,
}

impl TokenShard {
    pub fn n_rows(&self) -> usize {
        self.input_ids.len() / self.seq_len.max(1)
    }
}

/// Reads list columns of one record batch into flat row-major vectors.
struct ListReader<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
    /// Index of the batch's first row in the file, for messages.
    first_row: usize,
}

impl ListReader<'_> {
    /// Append every row of column `name` to `out`, checking that each has `width` values
    /// (`width` is taken from the first row when `None`).
    fn read<T: ArrowPrimitiveType>(
        &self,
        name: &str,
        width: &mut Option<usize>,
        out: &mut Vec<T::Native>,
    ) -> Result<()> {
        let err = |m: String| DataError::parquet(self.path, m);
        let list = self
            .batch
            .column_by_name(name)
            .and_then(|c| c.as_list_opt::<i32>());
        let values = list.and_then(|l| l.values().as_primitive_opt::<T>());
        let (Some(list), Some(values)) = (list, values) else {
            return Err(err(format!("column `{name}` has the wrong type")));
        };
        if list.null_count() > 0 || values.null_count() > 0 {
            return Err(err(format!("column `{name}` has nulls")));
        }
        let offsets = list.value_offsets();
        for r in 0..list.len() {
            let (s, e) = (offsets[r] as usize, offsets[r + 1] as usize);
            let w = *width.get_or_insert(e - s);
            if e - s != w {
                let row = self.first_row + r;
                let msg = format!(
                    "ragged rows: `{name}` row {row} has {} values, not {w}",
                    e - s
                );
                return Err(err(msg));
            }
            out.extend_from_slice(&values.values()[s..e]);
        }
        Ok(())
    }
}

/// Read a whole token shard. Other Parquet (a corpus shard, say), ragged rows or a shard without
/// rows are errors naming the file.
pub fn read_token_shard(path: &Path) -> Result<TokenShard> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::parquet(path, e))?;
    let schema = builder.schema();
    let item = |n: &str| match schema.field_with_name(n).map(|f| f.data_type()) {
        Ok(DataType::List(f)) => Some(f.data_type().clone()),
        Ok(_) => Some(DataType::Null), // present, but not a list
        Err(_) => None,
    };
    let wrong = |n: &str, t: &str| {
        let msg = format!("not an Anvil token shard: column `{n}` missing or not a list of {t}");
        Err(DataError::parquet(path, msg))
    };
    for (n, t) in [
        ("input_ids", DataType::UInt32),
        ("segment_ids", DataType::UInt16),
    ] {
        if item(n) != Some(t.clone()) {
            return wrong(n, &t.to_string());
        }
    }
    let ast = match (item("ast_depth"), item("ast_path")) {
        (None, None) => false,
        (Some(DataType::UInt16), Some(DataType::UInt16)) => true,
        (Some(DataType::UInt16), _) => return wrong("ast_path", "UInt16"),
        _ => return wrong("ast_depth", "UInt16"),
    };
    let has_mask = match item("loss_mask") {
        None => false,
        Some(DataType::UInt8) => true,
        Some(_) => return wrong("loss_mask", "UInt8"),
    };
    let reader = builder
        .with_batch_size(1024)
        .build()
        .map_err(|e| DataError::parquet(path, e))?;
    let (mut seq_len, mut path_width) = (None, None);
    let mut out = TokenShard {
        seq_len: 0,
        input_ids: Vec::new(),
        segment_ids: Vec::new(),
        ast_depth: ast.then(Vec::new),
        ast_path: ast.then(Vec::new),
        ast_max_path: 0,
        loss_mask: has_mask.then(Vec::new),
    };
    let mut n_rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| DataError::parquet(path, e))?;
        let rd = ListReader {
            batch: &batch,
            path,
            first_row: n_rows,
        };
        rd.read::<UInt32Type>("input_ids", &mut seq_len, &mut out.input_ids)?;
        rd.read::<UInt16Type>("segment_ids", &mut seq_len, &mut out.segment_ids)?;
        if let (Some(d), Some(p)) = (out.ast_depth.as_mut(), out.ast_path.as_mut()) {
            rd.read::<UInt16Type>("ast_depth", &mut seq_len, d)?;
            rd.read::<UInt16Type>("ast_path", &mut path_width, p)?;
        }
        if let Some(m) = out.loss_mask.as_mut() {
            let start = m.len();
            rd.read::<UInt8Type>("loss_mask", &mut seq_len, m)?;
            if let Some(i) = m[start..].iter().position(|&v| v > 1) {
                let row = n_rows + i / seq_len.unwrap_or(1).max(1);
                let msg = format!(
                    "loss_mask row {row} has the value {}, not 0 or 1",
                    m[start + i]
                );
                return Err(DataError::parquet(path, msg));
            }
        }
        n_rows += batch.num_rows();
    }
    out.seq_len = match seq_len {
        Some(l) if l > 0 => l,
        _ => return Err(DataError::parquet(path, "token shard has no rows")),
    };
    if let Some(w) = path_width {
        if w == 0 || w % out.seq_len != 0 {
            return Err(DataError::parquet(
                path,
                format!(
                    "ast_path rows have {w} values, not a multiple of seq_len {}",
                    out.seq_len
                ),
            ));
        }
        out.ast_max_path = w / out.seq_len;
    }
    Ok(out)
}

/// Read `tokens.json` of a tokenized directory.
pub fn read_manifest(dir: &Path) -> Result<TokenizeManifest> {
    let path = dir.join(MANIFEST);
    if !path.is_file() {
        return Err(DataError::invalid(
            dir,
            "no tokens.json: not a tokenized dataset, or its `anvil data tokenize` did not finish",
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| DataError::invalid(&path, format!("invalid tokens.json: {e}")))
}

/// The shards of `split`, in order, as listed in `tokens.json` (a directory without it is refused).
pub fn list_token_shards(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let manifest = read_manifest(dir)?;
    let mut out = Vec::new();
    for name in &manifest.split(split).shards {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(DataError::invalid(&p, "listed in tokens.json but missing"));
        }
        out.push(p);
    }
    Ok(out)
}
