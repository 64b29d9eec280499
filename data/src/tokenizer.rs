//! `anvil tokenizer train`: a byte-level BPE tokenizer (Hugging Face `tokenizers`), trained on the
//! train split of a prepared corpus and saved as a standard `tokenizer.json`.
//!
//! The pipeline is GPT-2's: no normalizer, the ByteLevel pre-tokenizer (GPT-2 split regex, no
//! prefix space) and the ByteLevel decoder, so every byte sequence is representable and
//! `decode(encode(x)) == x` for every UTF-8 text. Seven special tokens sit at fixed ids 0..=6
//! (see [`SPECIAL_TOKENS`]); the rest of the code base refers to them by the `*_ID` constants.
//!
//! Data is encoded with [`encode_text`], which never produces a special token: a source file that
//! literally contains `<|endoftext|>` is encoded as ordinary bytes, and the special ids are
//! inserted by the caller (packing, FIM) where they belong.

use crate::error::{DataError, Result};
use crate::shard::{self, Split};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::Path;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const EOT: &str = "<|endoftext|>";
pub const PAD: &str = "<|pad|>";
/// The mask token of the diffusion model.
pub const MASK: &str = "<|mask|>";
pub const FIM_PREFIX: &str = "<|fim_prefix|>";
pub const FIM_SUFFIX: &str = "<|fim_suffix|>";
pub const FIM_MIDDLE: &str = "<|fim_middle|>";
pub const FILE_SEP: &str = "<|file_sep|>";

/// Special tokens in id order: `SPECIAL_TOKENS[i]` has id `i` in every Anvil tokenizer.
pub const SPECIAL_TOKENS: [&str; 7] =
    [EOT, PAD, MASK, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, FILE_SEP];

pub const EOT_ID: u32 = 0;
pub const PAD_ID: u32 = 1;
pub const MASK_ID: u32 = 2;
pub const FIM_PREFIX_ID: u32 = 3;
pub const FIM_SUFFIX_ID: u32 = 4;
pub const FIM_MIDDLE_ID: u32 = 5;
pub const FILE_SEP_ID: u32 = 6;

/// Smallest useful vocabulary: the special tokens, the 256 byte symbols and at least one merge.
pub const MIN_VOCAB_SIZE: usize = SPECIAL_TOKENS.len() + 256 + 1;

/// How to train the tokenizer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Final vocabulary size, special tokens and the 256 byte symbols included.
    pub vocab_size: usize,
    /// A pair must occur at least this often to be merged.
    pub min_frequency: u64,
    /// Train on at most this many bytes of text: a deterministic prefix of the input (for a
    /// corpus, the train split in shard order); the last text is cut at a char boundary.
    pub max_bytes: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            vocab_size: 8192,
            min_frequency: 2,
            max_bytes: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size < MIN_VOCAB_SIZE {
            return Err(DataError::Config(format!(
                "--vocab-size {} is too small: a byte-level BPE needs at least {MIN_VOCAB_SIZE} \
                 (7 special tokens + 256 bytes + 1 merge)",
                self.vocab_size
            )));
        }
        if self.vocab_size > u32::MAX as usize {
            return Err(DataError::Config(format!(
                "--vocab-size {} is too large",
                self.vocab_size
            )));
        }
        if self.max_bytes == Some(0) {
            return Err(DataError::Config("--max-bytes must be positive".into()));
        }
        Ok(())
    }
}

fn tok_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// The untrained pipeline: BPE model, ByteLevel pre-tokenizer and decoder, nothing else.
/// No post-processor: the ByteLevel one only trims offsets, and we want untrimmed byte offsets.
fn pipeline() -> Tokenizer {
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
    tok.with_decoder(Some(ByteLevel::new(false, false, true)));
    tok
}

/// Train on `texts` (each one a whole file). Deterministic: the same texts and config give a
/// byte-identical `tokenizer.json` (see the `tokenizer` tests).
pub fn train_from_texts<I: Iterator<Item = String>>(
    texts: I,
    cfg: &TrainConfig,
) -> Result<Tokenizer> {
    cfg.validate()?;
    // The trainer consumes a `Send` iterator and builds its own word counts anyway, so holding the
    // (byte-capped) texts in memory costs little extra and frees callers from `Send` bounds.
    let texts = take_prefix(texts, cfg.max_bytes);
    if texts.iter().all(|t| t.is_empty()) {
        return Err(DataError::Config(
            "no text to train the tokenizer on".into(),
        ));
    }
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let trainer = BpeTrainer::builder()
        .vocab_size(cfg.vocab_size)
        .min_frequency(cfg.min_frequency)
        .show_progress(false)
        .initial_alphabet(alphabet)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    let mut tok = pipeline();
    let pb = crate::progress::spinner("training BPE");
    tok.train(&mut trainer, texts.iter()).map_err(tok_err)?;
    pb.finish_and_clear();
    check_special_tokens(&tok).map_err(DataError::Tokenizer)?;
    tok.set_encode_special_tokens(true);
    Ok(tok)
}

/// Keep a prefix of `texts` totalling at most `max_bytes`, cutting the last one at a char boundary.
fn take_prefix(texts: impl Iterator<Item = String>, max_bytes: Option<u64>) -> Vec<String> {
    let Some(max) = max_bytes else {
        return texts.collect();
    };
    let mut left = max as usize;
    let mut out = Vec::new();
    for mut t in texts {
        if left == 0 {
            break;
        }
        if t.len() > left {
            let mut cut = left;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            t.truncate(cut);
        }
        left -= t.len();
        out.push(t);
    }
    out
}

/// Train on the `content` of every file in the train split of a prepared corpus, shards in
/// order (so `max_bytes` takes a deterministic prefix). Val is never seen by the tokenizer.
pub fn train_from_corpus(corpus_dir: &Path, cfg: &TrainConfig) -> Result<Tokenizer> {
    cfg.validate()?;
    let shards = shard::list_shards(corpus_dir, Split::Train)?;
    if shards.is_empty() {
        return Err(DataError::invalid(corpus_dir, "corpus has no train shards"));
    }
    let mut texts = Vec::new();
    let mut left = cfg.max_bytes.unwrap_or(u64::MAX);
    'shards: for path in &shards {
        for rec in shard::read_shard(path)? {
            if left == 0 {
                break 'shards;
            }
            left = left.saturating_sub(rec.content.len() as u64);
            texts.push(rec.content);
        }
    }
    if texts.iter().all(|t| t.is_empty()) {
        return Err(DataError::invalid(
            corpus_dir,
            "the train split has no text",
        ));
    }
    train_from_texts(texts.into_iter(), cfg)
}

/// Check that every special token exists, is marked special, and has its fixed id.
/// Returns a message (the caller adds the file name, when there is one).
fn check_special_tokens(tok: &Tokenizer) -> std::result::Result<(), String> {
    let added = tok.get_added_tokens_decoder();
    for (id, name) in SPECIAL_TOKENS.iter().enumerate() {
        match tok.token_to_id(name) {
            Some(got) if got == id as u32 => {}
            Some(got) => {
                return Err(format!(
                    "special token {name} has id {got}, Anvil needs id {id}"
                ));
            }
            None => {
                return Err(format!(
                    "special token {name} is missing (Anvil needs it at id {id})"
                ));
            }
        }
        if !added
            .get(&(id as u32))
            .is_some_and(|t| t.special && t.content == *name)
        {
            return Err(format!(
                "token {name} (id {id}) is not registered as a special token"
            ));
        }
    }
    Ok(())
}

/// Serialize to the Hugging Face `tokenizer.json` format (compact), atomically.
pub fn save(tok: &Tokenizer, path: &Path) -> Result<()> {
    let json = tok.to_string(false).map_err(tok_err)?;
    crate::atomic::write(path, json.as_bytes())
}

/// Parse a `tokenizer.json` held in memory; `path` is only used in error messages.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
    let mut tok = Tokenizer::from_bytes(bytes)
        .map_err(|e| DataError::invalid(path, format!("not a valid tokenizer.json: {e}")))?;
    check_special_tokens(&tok)
        .map_err(|m| DataError::invalid(path, format!("{m}: not an Anvil tokenizer")))?;
    // Not part of tokenizer.json: has to be set on every load (see `encode_text`).
    tok.set_encode_special_tokens(true);
    Ok(tok)
}

/// The number of text bytes each token id stands for (0 for the special tokens), for bits per
/// byte. In a byte-level BPE every character of a vocabulary entry is exactly one byte.
pub fn token_byte_lengths(tok: &Tokenizer) -> Vec<u32> {
    let vocab = tok.get_vocab(true);
    let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut lens = vec![0u32; n];
    for (token, id) in vocab {
        if (id as usize) >= SPECIAL_TOKENS.len() {
            lens[id as usize] = token.chars().count() as u32;
        }
    }
    lens
}

/// GPT-2's printable stand-in for each byte, as byte-level BPE vocabularies spell tokens.
pub fn byte_level_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    // The others are numbered from U+0100 in byte order.
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("U+0100..U+0143 are chars")
}

/// The text bytes of every token id below `vocab`, exactly as the byte-level decoder writes
/// them (empty for an id the tokenizer does not have); `None` for a tokenizer whose decoder is not
/// byte-level, whose token strings are not bytes.
pub fn token_bytes(tok: &Tokenizer, vocab: usize) -> Option<Vec<Box<[u8]>>> {
    use tokenizers::decoders::DecoderWrapper;
    if !matches!(tok.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
        return None;
    }
    let to_byte: std::collections::HashMap<char, u8> =
        (0..=255u8).map(|b| (byte_level_char(b), b)).collect();
    let bytes = (0..vocab as u32)
        .map(|id| {
            let Some(s) = tok.id_to_token(id) else {
                return Box::default();
            };
            // The decoder's rule: a token spelled in the byte alphabet is those bytes, any
            // other (an added token) is its own UTF-8.
            s.chars()
                .map(|c| to_byte.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| s.as_bytes().to_vec())
                .into_boxed_slice()
        })
        .collect();
    Some(bytes)
}

/// Load a `tokenizer.json`, checking the special tokens, ready for [`encode_text`].
pub fn load(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_bytes(&bytes, path)
}

/// Token ids of one text, with where each token came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// `(start, end)` byte offsets into the encoded `&str`, one per token. Byte-level BPE can split
    /// a multi-byte character across tokens; every such token reports the whole character's span,
    /// so offsets always lie on char boundaries, starts never decrease, and neighbouring tokens
    /// may share a span. `&text[start..end]` is always valid.
    pub offsets: Vec<(usize, usize)>,
}

/// Encode file content as plain text: special-token strings in it are ordinary bytes, never
/// special ids. The tokenizer must come from [`load`], [`from_bytes`] or training here (they set
/// `encode_special_tokens`; a bare `Tokenizer::from_file` does not, and is refused).
pub fn encode_text(tok: &Tokenizer, text: &str) -> Result<Encoded> {
    if !tok.get_encode_special_tokens() {
        return Err(DataError::Tokenizer(
            "tokenizer would turn special-token strings in data into special ids; \
             load it with anvil_data::tokenizer::load"
                .into(),
        ));
    }
    let enc = tok.encode(text, false).map_err(tok_err)?;
    Ok(Encoded {
        ids: enc.get_ids().to_vec(),
        offsets: enc.get_offsets().to_vec(),
    })
}

/// Decode ids back to text, special tokens included (as their literal strings).
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, false).map_err(tok_err)
}

/// Outcome of [`round_trip_check`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RoundTripReport {
    pub n_texts: usize,
    pub n_bytes: u64,
    pub n_tokens: u64,
    pub n_failures: usize,
    /// The first failures (by name, at most [`MAX_REPORTED_FAILURES`]), each `name: reason`.
    pub failures: Vec<String>,
}

pub const MAX_REPORTED_FAILURES: usize = 20;

impl RoundTripReport {
    pub fn ok(&self) -> bool {
        self.n_failures == 0
    }
    /// Average bytes per token: the compression the tokenizer achieves on these texts.
    pub fn bytes_per_token(&self) -> f64 {
        if self.n_tokens == 0 {
            0.0
        } else {
            self.n_bytes as f64 / self.n_tokens as f64
        }
    }
}

/// Check `decode(encode(text)) == text` for every `(name, text)`, in parallel. A text whose
/// encoding contains a special id fails too (data must never produce one).
pub fn round_trip_check<I, N, T>(tok: &Tokenizer, texts: I) -> Result<RoundTripReport>
where
    I: IntoParallelIterator<Item = (N, T)>,
    N: AsRef<str> + Send,
    T: AsRef<str> + Send,
{
    // Misconfiguration is an error for the whole check, not a failure of every text.
    encode_text(tok, "")?;
    let special = SPECIAL_TOKENS.len() as u32;
    let per_text = |(name, text): (N, T)| -> (u64, u64, Option<String>) {
        let text = text.as_ref();
        let fail = |why: String| Some(format!("{}: {why}", name.as_ref()));
        let enc = match encode_text(tok, text) {
            Ok(e) => e,
            Err(e) => return (text.len() as u64, 0, fail(format!("encode failed: {e}"))),
        };
        let n = enc.ids.len() as u64;
        let why = if let Some(i) = enc.ids.iter().position(|&id| id < special) {
            fail(format!("token {i} is the special id {}", enc.ids[i]))
        } else {
            match decode(tok, &enc.ids) {
                Err(e) => fail(format!("decode failed: {e}")),
                Ok(back) if back == text => None,
                Ok(back) => {
                    let at = back
                        .bytes()
                        .zip(text.bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                    fail(format!(
                        "decoded text differs from byte {at} ({} vs {} bytes)",
                        back.len(),
                        text.len()
                    ))
                }
            }
        };
        (text.len() as u64, n, why)
    };
    let results: Vec<(u64, u64, Option<String>)> = texts.into_par_iter().map(per_text).collect();
    let mut report = RoundTripReport {
        n_texts: results.len(),
        ..Default::default()
    };
    let mut failures = Vec::new();
    for (bytes, tokens, failure) in results {
        report.n_bytes += bytes;
        report.n_tokens += tokens;
        failures.extend(failure);
    }
    report.n_failures = failures.len();
    failures.sort();
    failures.truncate(MAX_REPORTED_FAILURES);
    report.failures = failures;
    Ok(report)
}

/// `decode(encode(x)) == x` for every file of a prepared corpus (both splits): an error naming
/// the first failing file when any fails, so a lossy tokenizer is never saved or cached.
pub fn check_corpus(tok: &Tokenizer, corpus_dir: &Path) -> Result<RoundTripReport> {
    let mut texts = Vec::new();
    for split in [Split::Train, Split::Val] {
        for p in shard::list_shards(corpus_dir, split)? {
            texts.extend(
                shard::read_shard(&p)?
                    .into_iter()
                    .map(|r| (r.path, r.content)),
            );
        }
    }
    let report = round_trip_check(tok, texts)?;
    if !report.ok() {
        return Err(DataError::Tokenizer(format!(
            "round trip failed on {} of {} files of {} (first: {})",
            report.n_failures,
            report.n_texts,
            corpus_dir.display(),
            report.failures.first().map(String::as_str).unwrap_or("?")
        )));
    }
    Ok(report)
}
