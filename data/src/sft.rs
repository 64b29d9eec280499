//! Supervised fine-tuning data: prompt/completion pairs in, packed token rows with a loss mask out.
//!
//! **Input**: JSONL (plain or gzipped), one object a line with string `prompt` and `completion`,
//! or a HumanEval-shaped task with `prompt` and `canonical_solution` (what `anvil data synth`
//! writes). Other keys are ignored. A malformed line is an error naming `file:line`.
//!
//! **Encoding**: `encode(prompt) ++ encode(completion) ++ [<|endoftext|>]`, each part encoded on
//! its own. A generation request is the prompt encoded alone, so this is the token boundary the
//! model will continue from; encoding `prompt + completion` as one text could merge tokens across
//! it and teach a boundary that never occurs at inference. The loss mask is 0 on the prompt and 1
//! on the completion and its EOT: prompts are context, not targets.
//!
//! **Packing**: whole examples in order, never split across rows, each with its own 1-based
//! segment id in its row (document masking); when the next example does not fit, the row is
//! padded (`<|pad|>`, segment 0, mask 0) and a new one starts. An example longer than a row keeps
//! its completion and EOT and loses the start of its prompt; a completion longer than a row by
//! itself keeps its first `seq_len` tokens (no EOT). Both count as truncated.
//!
//! **Output**: the token shard format of [`crate::tokenize`] plus a `loss_mask` column
//! (`List<UInt8>`, 0/1), and `tokens.json` with an `sft` section. Deterministic: the same examples,
//! tokenizer and config give byte-identical shards.

use crate::atomic;
use crate::error::{DataError, Result};
use crate::shard::Split;
use crate::tokenize::{
    MANIFEST, Rows, ShardSink, SplitStats, TOKENIZER_FILE, TokenizeConfig, TokenizeManifest,
    name_shards,
};
use crate::tokenizer::{self, EOT_ID, PAD_ID, encode_text};
use flate2::read::MultiGzDecoder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;
use xxhash_rust::xxh3::Xxh3;

/// Examples encoded in parallel per batch: bounds memory while keeping both cores busy.
const BATCH: usize = 1024;
/// Truncated examples named in `tokens.json` per split.
const MAX_REPORTED: usize = 20;

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    pub prompt: String,
    pub completion: String,
    /// `file:line`, for messages and the truncation report.
    pub origin: String,
}

impl SftExample {
    /// Hex xxh3-128 of prompt and completion (length-prefixed, so the boundary counts).
    pub fn content_hash(&self) -> String {
        let mut h = Xxh3::new();
        h.update(&(self.prompt.len() as u64).to_le_bytes());
        h.update(self.prompt.as_bytes());
        h.update(self.completion.as_bytes());
        format!("{:032x}", h.digest128())
    }
}

/// Both splits, ready to tokenize.
#[derive(Debug, Clone, PartialEq)]
pub struct SftData {
    pub train: Vec<SftExample>,
    pub val: Vec<SftExample>,
    /// The share held out of the train files by content hash; `None` when `val` came from
    /// validation files.
    pub val_fraction: Option<f64>,
}

/// What the `sft` section of `tokens.json` records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SftStats {
    /// `None`: validation examples came from `data.sft_val` files.
    pub val_fraction: Option<f64>,
    pub train: SftSplitStats,
    pub val: SftSplitStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SftSplitStats {
    pub n_examples: u64,
    /// Prompt tokens kept (after truncation): context, not targets.
    pub n_prompt_tokens: u64,
    /// Tokens with loss mask 1: completions and their EOTs, after truncation.
    pub n_target_tokens: u64,
    /// Examples longer than `seq_len`, cut to fit.
    pub n_truncated: u64,
    /// `file:line` of the first truncated examples.
    pub truncated: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Read one JSONL file (gzip recognised by its magic bytes).
pub fn read_jsonl(path: &Path) -> Result<Vec<SftExample>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_jsonl(&bytes, path)
}

/// Parse a JSONL file held in memory; `path` labels errors and origins. A file without examples
/// is an error: it is almost certainly the wrong file.
pub fn parse_jsonl(bytes: &[u8], path: &Path) -> Result<Vec<SftExample>> {
    let mut reader: Box<dyn BufRead> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(MultiGzDecoder::new(bytes)))
    } else {
        Box::new(bytes)
    };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        // Bytes, not `lines()`: invalid UTF-8 must be reported with its line, not as an I/O error.
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let err = |msg: String| DataError::Jsonl {
            path: path.to_path_buf(),
            line: lineno,
            msg,
        };
        let line = std::str::from_utf8(&buf).map_err(|e| {
            err(format!(
                "not valid UTF-8 (at byte {} of the line)",
                e.valid_up_to()
            ))
        })?;
        let line = if lineno == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        let (prompt, completion) = parse_line(line).map_err(err)?;
        out.push(SftExample {
            prompt,
            completion,
            origin: format!("{}:{lineno}", path.display()),
        });
    }
    if out.is_empty() {
        return Err(DataError::invalid(path, "no examples in file"));
    }
    Ok(out)
}

/// `(prompt, completion)` of one line, or what is wrong with it.
pub fn parse_line(line: &str) -> std::result::Result<(String, String), String> {
    use serde_json::Value;
    let kind = |v: &Value| match v {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = &value else {
        return Err(format!("expected a JSON object, found {}", kind(&value)));
    };
    let field = |key: &str| match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("`{key}` must be a string, found {}", kind(v))),
    };
    let prompt = field("prompt")?.ok_or("missing `prompt`")?;
    let (key, completion) = match (field("completion")?, field("canonical_solution")?) {
        (Some(c), None) => ("completion", c),
        (None, Some(c)) => ("canonical_solution", c),
        (Some(_), Some(_)) => {
            return Err(
                "has both `completion` and `canonical_solution`: which one is the target?".into(),
            );
        }
        (None, None) => return Err("missing `completion` (or `canonical_solution`)".into()),
    };
    if completion.is_empty() {
        return Err(format!("empty `{key}`: nothing to train on"));
    }
    Ok((prompt, completion))
}

/// The splits: `val` as given, or (when empty) the examples of `train` whose content hash falls
/// under `val_fraction` with `seed` — identical examples always land on the same side, whatever
/// their order. Either split coming out empty is an error.
pub fn assemble(
    train: Vec<SftExample>,
    val: Vec<SftExample>,
    val_fraction: f64,
    seed: u64,
) -> Result<SftData> {
    let data = if val.is_empty() {
        let (val, train): (Vec<_>, Vec<_>) = train
            .into_iter()
            .partition(|e| crate::prepare::is_val(&e.content_hash(), seed, val_fraction));
        if val.is_empty() {
            return Err(DataError::Config(format!(
                "no example of data.sft fell in the held-out split (data.sft_val_fraction = \
                 {val_fraction}): add examples, raise the fraction or list files in data.sft_val"
            )));
        }
        SftData {
            train,
            val,
            val_fraction: Some(val_fraction),
        }
    } else {
        SftData {
            train,
            val,
            val_fraction: None,
        }
    };
    if data.train.is_empty() {
        return Err(DataError::Config(
            "every example of data.sft was held out for validation: lower \
             data.sft_val_fraction or add examples"
                .into(),
        ));
    }
    Ok(data)
}

/// Read `train_files` and `val_files` and split them (see [`assemble`]).
pub fn load(
    train_files: &[PathBuf],
    val_files: &[PathBuf],
    val_fraction: f64,
    seed: u64,
) -> Result<SftData> {
    let read_all = |files: &[PathBuf]| -> Result<Vec<SftExample>> {
        let mut out = Vec::new();
        for f in files {
            out.extend(read_jsonl(f)?);
        }
        Ok(out)
    };
    assemble(
        read_all(train_files)?,
        read_all(val_files)?,
        val_fraction,
        seed,
    )
}

/// The texts a tokenizer for this data trains on: the prompts and completions of the train split,
/// each on its own (that is how they are encoded).
pub fn training_texts(data: &SftData) -> impl Iterator<Item = String> + '_ {
    data.train
        .iter()
        .flat_map(|e| [e.prompt.clone(), e.completion.clone()])
}

// ---------------------------------------------------------------------------------------------
// Encoding and packing

/// One example's tokens and loss mask (1 = target), at most `seq_len` long.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedExample {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    /// Prompt tokens kept (the mask is 0 on exactly these, at the start).
    pub n_prompt: usize,
    pub truncated: bool,
}

/// Encode one example for rows of `seq_len` tokens (see the module docs for the rules).
pub fn encode_example(
    tok: &Tokenizer,
    prompt: &str,
    completion: &str,
    seq_len: usize,
) -> Result<EncodedExample> {
    let prompt = encode_text(tok, prompt)?.ids;
    let mut target = encode_text(tok, completion)?.ids;
    target.push(EOT_ID);
    let truncated = prompt.len() + target.len() > seq_len;
    // The completion is what is learned, so the prompt gives way first, from its start: the
    // tokens nearest the completion are the context that matters most.
    let keep = if target.len() >= seq_len {
        target.truncate(seq_len);
        0
    } else {
        prompt.len().min(seq_len - target.len())
    };
    let prompt = &prompt[prompt.len() - keep..];
    let mut ids = Vec::with_capacity(keep + target.len());
    ids.extend_from_slice(prompt);
    ids.extend_from_slice(&target);
    let mut mask = vec![0u8; keep];
    mask.resize(ids.len(), 1);
    Ok(EncodedExample {
        ids,
        mask,
        n_prompt: keep,
        truncated,
    })
}

/// Whole examples into rows; full shards go to the sink.
struct Packer<'a> {
    seq_len: usize,
    rows_per_shard: usize,
    rows: Rows,
    n_rows: u64,
    n_pad: u64,
    sink: ShardSink<'a>,
}

impl Packer<'_> {
    fn push(&mut self, ex: &EncodedExample) -> Result<()> {
        let (l, n) = (self.seq_len, ex.ids.len());
        debug_assert!((1..=l).contains(&n), "encode_example bounds examples");
        let used = self.rows.ids.len() % l;
        if used > 0 && used + n > l {
            self.pad_row()?;
        }
        let seg = if self.rows.ids.len().is_multiple_of(l) {
            1
        } else {
            self.rows.seg.last().map_or(1, |s| s + 1)
        };
        let rows = &mut self.rows;
        rows.ids.extend_from_slice(&ex.ids);
        rows.seg.extend(std::iter::repeat_n(seg, n));
        rows.mask.extend_from_slice(&ex.mask);
        self.flush_if_full()
    }

    /// Pad the row being filled, if any, to `seq_len`.
    fn pad_row(&mut self) -> Result<()> {
        let used = self.rows.ids.len() % self.seq_len;
        if used == 0 {
            return Ok(());
        }
        let k = self.seq_len - used;
        let rows = &mut self.rows;
        rows.ids.extend(std::iter::repeat_n(PAD_ID, k));
        rows.seg.extend(std::iter::repeat_n(0, k));
        rows.mask.extend(std::iter::repeat_n(0, k));
        self.n_pad += k as u64;
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.rows.ids.len() == self.rows_per_shard * self.seq_len {
            self.n_rows += self.rows_per_shard as u64;
            self.sink.write(&self.rows)?;
            self.rows = Rows::default();
        }
        Ok(())
    }

    /// Pad the last row and write what is left; returns the temp files in order.
    fn finish(mut self) -> Result<(u64, u64, Vec<PathBuf>)> {
        self.pad_row()?;
        if !self.rows.ids.is_empty() {
            self.n_rows += (self.rows.ids.len() / self.seq_len) as u64;
            self.sink.write(&self.rows)?;
        }
        Ok((self.n_pad, self.n_rows, self.sink.files))
    }
}

/// FIM and AST facts describe corpus files; on SFT examples they would corrupt the prompt /
/// completion boundary or describe nothing, so asking for them is an error rather than ignored.
pub fn check_config(cfg: &TokenizeConfig) -> Result<()> {
    cfg.validate()?;
    if cfg.fim_rate > 0.0 {
        return Err(DataError::Config(format!(
            "data.tokenize.fim_rate = {} does not apply to SFT examples: set it to 0 with data.sft",
            cfg.fim_rate
        )));
    }
    if cfg.ast {
        return Err(DataError::Config(
            "data.tokenize.ast does not apply to SFT examples: set it to false with data.sft"
                .into(),
        ));
    }
    Ok(())
}

/// Tokenize and pack both splits into `out_dir` (built in a staging directory, `tokens.json`
/// written last), with the tokenizer at `tokenizer_path` used as it is.
pub fn tokenize(
    data: &SftData,
    tokenizer_path: &Path,
    out_dir: &Path,
    cfg: &TokenizeConfig,
    overwrite: bool,
) -> Result<TokenizeManifest> {
    check_config(cfg)?;
    let tok_bytes = std::fs::read(tokenizer_path).map_err(|e| DataError::io(tokenizer_path, e))?;
    let tok = tokenizer::from_bytes(&tok_bytes, tokenizer_path)?;
    let staged = atomic::StagedDir::new(out_dir, overwrite, &[tokenizer_path])?;
    let out = staged.path();
    atomic::write(&out.join(TOKENIZER_FILE), &tok_bytes)?;
    let pb = crate::progress::bar(
        (data.train.len() + data.val.len()) as u64,
        "tokenize",
        false,
    );
    let (train, train_sft) = tokenize_split(&tok, &data.train, Split::Train, out, cfg, &pb)?;
    let (val, val_sft) = tokenize_split(&tok, &data.val, Split::Val, out, cfg, &pb)?;
    pb.finish_and_clear();
    let columns = ["input_ids", "segment_ids", "loss_mask"];
    let mut manifest = TokenizeManifest::new(&tok, &tok_bytes, cfg, &columns, (train, val));
    manifest.sft = Some(SftStats {
        val_fraction: data.val_fraction,
        train: train_sft,
        val: val_sft,
    });
    atomic::write_json(&out.join(MANIFEST), &manifest)?;
    staged.commit()?;
    Ok(manifest)
}

fn tokenize_split(
    tok: &Tokenizer,
    examples: &[SftExample],
    split: Split,
    out_dir: &Path,
    cfg: &TokenizeConfig,
    pb: &indicatif::ProgressBar,
) -> Result<(SplitStats, SftSplitStats)> {
    let (mut stats, mut sft) = (SplitStats::default(), SftSplitStats::default());
    let mut packer = Packer {
        seq_len: cfg.seq_len,
        rows_per_shard: cfg.rows_per_shard,
        rows: Rows::default(),
        n_rows: 0,
        n_pad: 0,
        sink: ShardSink::new(out_dir, split, cfg).with_loss_mask(),
    };
    for batch in examples.chunks(BATCH) {
        // Parallel encode, in-order collect: the packed rows never depend on scheduling.
        let encoded: Vec<EncodedExample> = batch
            .par_iter()
            .map(|e| {
                encode_example(tok, &e.prompt, &e.completion, cfg.seq_len)
                    .map_err(|err| DataError::Tokenizer(format!("{}: {err}", e.origin)))
            })
            .collect::<Result<_>>()?;
        for (e, enc) in batch.iter().zip(&encoded) {
            stats.n_docs += 1;
            stats.n_bytes += (e.prompt.len() + e.completion.len()) as u64;
            stats.n_tokens += enc.ids.len() as u64;
            sft.n_examples += 1;
            sft.n_prompt_tokens += enc.n_prompt as u64;
            sft.n_target_tokens += (enc.ids.len() - enc.n_prompt) as u64;
            if enc.truncated {
                sft.n_truncated += 1;
                if sft.truncated.len() < MAX_REPORTED {
                    sft.truncated.push(e.origin.clone());
                }
            }
            packer.push(enc)?;
        }
        pb.inc(batch.len() as u64);
    }
    let (n_pad, n_rows, files) = packer.finish()?;
    stats.n_pad = n_pad;
    stats.n_rows = n_rows;
    stats.shards = name_shards(out_dir, split, &files)?;
    Ok((stats, sft))
}
