//! The whole data pipeline from one recipe section: prepare the corpus, train the tokenizer,
//! tokenize and pack; or, with `sft` files, pack supervised fine-tuning examples with a loss mask
//! instead of building a corpus. Results are cached under a key made from the recipe's data
//! settings and the content of every input file, so a second run with the same inputs is free and
//! any change to an input file or setting builds anew. `anvil data pipeline` runs it; `anvil train
//! run` does too.

use crate::error::{DataError, Result};
use crate::prepare::{self, PrepareConfig, RunOptions};
use crate::sft::{self, SftData};
use crate::tokenize::{self, TokenizeConfig};
use crate::tokenizer::{self, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// The default of `data.sft_val_fraction`.
pub const DEFAULT_SFT_VAL_FRACTION: f64 = 0.05;

/// The `[data]` section of a recipe.
///
/// ```toml
/// [data]
/// cache_dir = "checkpoints/data"
/// [data.corpus]            # anvil data prepare
/// sources = ["python-stdlib"]
/// langs = ["python"]
/// [data.tokenizer]         # anvil tokenizer train
/// vocab_size = 8192
/// [data.tokenize]          # anvil data tokenize
/// seq_len = 256
/// fim_rate = 0.5
/// ```
///
/// Supervised fine-tuning instead of a corpus:
///
/// ```toml
/// [data]
/// sft = ["synth/train.jsonl"]
/// sft_val = ["synth/heldout.jsonl"]   # or sft_val_fraction = 0.05 (the default)
/// tokenizer_file = "pretrained/tokenizer.json"   # optional: else one is trained on sft
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataRecipe {
    /// Use these packed token shards (an `anvil data tokenize` output) as they are, instead of
    /// building from `corpus.sources`.
    pub tokens: Option<PathBuf>,
    /// Where built data is kept, one folder per cache key.
    pub cache_dir: PathBuf,
    /// Supervised fine-tuning examples: JSONL files of `{"prompt", "completion"}` objects or
    /// HumanEval-shaped tasks (`prompt` + `canonical_solution`). When set, these are packed
    /// with a loss mask on the completions instead of building a corpus.
    // Skipped when unset (here and below) so recipes that predate these keys serialize as before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sft: Vec<PathBuf>,
    /// Validation examples for `sft`, same format. When empty, `sft_val_fraction` is held out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sft_val: Vec<PathBuf>,
    /// Share of the `sft` examples held out for validation (by content hash, seeded by
    /// `tokenize.seed`) when `sft_val` is empty.
    #[serde(skip_serializing_if = "is_default_val_fraction")]
    pub sft_val_fraction: f64,
    /// Use this `tokenizer.json` as it is instead of training one (a pretrained model's, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer_file: Option<PathBuf>,
    pub corpus: PrepareConfig,
    pub tokenizer: TrainConfig,
    pub tokenize: TokenizeConfig,
}

fn is_default_val_fraction(f: &f64) -> bool {
    *f == DEFAULT_SFT_VAL_FRACTION
}

impl Default for DataRecipe {
    fn default() -> Self {
        DataRecipe {
            tokens: None,
            cache_dir: PathBuf::from("checkpoints/data"),
            sft: Vec::new(),
            sft_val: Vec::new(),
            sft_val_fraction: DEFAULT_SFT_VAL_FRACTION,
            tokenizer_file: None,
            corpus: PrepareConfig::default(),
            tokenizer: TrainConfig::default(),
            tokenize: TokenizeConfig::default(),
        }
    }
}

impl DataRecipe {
    /// The checks that need no file: conflicting or out-of-range keys, named by their key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Config(m));
        if !(0.0..1.0).contains(&self.sft_val_fraction) {
            return bad(format!(
                "data.sft_val_fraction must be in [0, 1), got {}",
                self.sft_val_fraction
            ));
        }
        if self.sft.is_empty() {
            if !self.sft_val.is_empty() {
                return bad("data.sft_val needs data.sft (the training examples)".into());
            }
            return Ok(());
        }
        if self.tokens.is_some() {
            return bad(
                "data.tokens and data.sft exclude each other: use ready-made token shards or \
                 build them from SFT files"
                    .into(),
            );
        }
        if self.sft_val.is_empty() && self.sft_val_fraction == 0.0 {
            return bad(
                "data.sft_val_fraction = 0 leaves no validation examples: list files in \
                 data.sft_val or hold out a fraction above 0"
                    .into(),
            );
        }
        sft::check_config(&self.tokenize)
    }
}

/// Where the pipeline's outputs are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedData {
    /// `None` for ready-made token shards and for SFT data (which has no corpus).
    pub corpus: Option<PathBuf>,
    pub tokenizer: PathBuf,
    pub tokens: PathBuf,
    /// The cache key (hex); `None` for ready-made token shards.
    pub key: Option<String>,
    /// Stages that were built now rather than found in the cache.
    pub built: Vec<String>,
}

/// Key over the settings that shape the data and every input's bytes: for a corpus, exactly the
/// inputs `prepare` reads (the same walk, so .gitignore, symlinks, `--langs` and the stdlib's
/// excluded site-packages agree) and the license files that govern them; for SFT data, every
/// file of `sft` and `sft_val`; in both cases `tokenizer_file`'s bytes when it is set.
pub fn cache_key(recipe: &DataRecipe) -> Result<String> {
    let given_tok = read_tokenizer_file(recipe)?;
    if recipe.sft.is_empty() {
        corpus_key(recipe, given_tok.as_deref())
    } else {
        Ok(sft_key(
            recipe,
            &read_sft_files(recipe)?,
            given_tok.as_deref(),
        ))
    }
}

fn corpus_key(recipe: &DataRecipe, given_tok: Option<&[u8]>) -> Result<String> {
    let mut h = Xxh3::new();
    let version = env!("CARGO_PKG_VERSION");
    match given_tok {
        // Exactly the historical key, so caches built before `tokenizer_file` existed stay hits.
        None => {
            let settings = (&recipe.corpus, &recipe.tokenizer, &recipe.tokenize, version);
            h.update(&serde_json::to_vec(&settings).expect("serializable settings"));
        }
        Some(bytes) => {
            let settings = (&recipe.corpus, "tokenizer_file", &recipe.tokenize, version);
            h.update(&serde_json::to_vec(&settings).expect("serializable settings"));
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
    let resolved: Vec<PathBuf> = recipe
        .corpus
        .sources
        .iter()
        .map(|s| crate::source::resolve(s))
        .collect::<Result<_>>()?;
    let collected = crate::source::collect(&resolved, &recipe.corpus.langs)?;
    let mut license_files = std::collections::BTreeSet::new();
    for f in &collected.files {
        h.update(&(f.source_idx as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update(&(f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
        h.update(f.license_hint.as_deref().unwrap_or("").as_bytes());
        if let Some(l) = &f.license_file {
            license_files.insert(l.clone());
        }
    }
    for l in license_files {
        h.update(l.to_string_lossy().as_bytes());
        h.update(&std::fs::read(&l).unwrap_or_default());
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// The bytes of every `sft` and `sft_val` file, read once: the key hashes exactly what is parsed.
struct SftInputs {
    train: Vec<(PathBuf, Vec<u8>)>,
    val: Vec<(PathBuf, Vec<u8>)>,
}

fn read_sft_files(recipe: &DataRecipe) -> Result<SftInputs> {
    let read = |key: &str, files: &[PathBuf]| -> Result<Vec<(PathBuf, Vec<u8>)>> {
        files
            .iter()
            .map(|f| match std::fs::read(f) {
                Ok(b) => Ok((f.clone(), b)),
                Err(e) => Err(DataError::invalid(f, format!("{key}: {e}"))),
            })
            .collect()
    };
    Ok(SftInputs {
        train: read("data.sft", &recipe.sft)?,
        val: read("data.sft_val", &recipe.sft_val)?,
    })
}

fn sft_key(recipe: &DataRecipe, inputs: &SftInputs, given_tok: Option<&[u8]>) -> String {
    let mut h = Xxh3::new();
    // Only what shapes the output: the corpus settings are unused, the tokenizer settings are
    // unused with a given tokenizer, and the fraction is unused with validation files.
    let tokenizer = given_tok.is_none().then_some(&recipe.tokenizer);
    let fraction = recipe.sft_val.is_empty().then_some(recipe.sft_val_fraction);
    let settings = (
        "sft",
        tokenizer,
        &recipe.tokenize,
        fraction,
        env!("CARGO_PKG_VERSION"),
    );
    h.update(&serde_json::to_vec(&settings).expect("serializable settings"));
    for files in [&inputs.train, &inputs.val] {
        h.update(&(files.len() as u64).to_le_bytes());
        for (_, bytes) in files {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
    if let Some(bytes) = given_tok {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("{:032x}", h.digest128())
}

/// `tokenizer_file`'s bytes, checked to be an Anvil tokenizer before any work is done.
fn read_tokenizer_file(recipe: &DataRecipe) -> Result<Option<Vec<u8>>> {
    let Some(path) = &recipe.tokenizer_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path)
        .map_err(|e| DataError::invalid(path, format!("data.tokenizer_file: {e}")))?;
    tokenizer::from_bytes(&bytes, path)?;
    Ok(Some(bytes))
}

/// Ready-made shards must have been encoded with the tokenizer the model was: equal files, or
/// files that differ only in formatting (an HF export may re-serialize the same tokenizer).
fn check_same_tokenizer(given: &[u8], given_path: &Path, tokens_tok: &Path) -> Result<()> {
    let theirs = std::fs::read(tokens_tok).map_err(|e| DataError::io(tokens_tok, e))?;
    if theirs == given {
        return Ok(());
    }
    let canonical = |bytes: &[u8], path: &Path| -> Result<String> {
        tokenizer::from_bytes(bytes, path)?
            .to_string(false)
            .map_err(|e| DataError::Tokenizer(e.to_string()))
    };
    if canonical(&theirs, tokens_tok)? == canonical(given, given_path)? {
        return Ok(());
    }
    Err(DataError::invalid(
        tokens_tok,
        format!(
            "data.tokens were encoded with another tokenizer than data.tokenizer_file = {}",
            given_path.display()
        ),
    ))
}

/// Build (or find in the cache) everything a trainer needs.
pub fn run(recipe: &DataRecipe, command: &[String]) -> Result<PreparedData> {
    recipe.validate()?;
    let given_tok = read_tokenizer_file(recipe)?;
    if let Some(tokens) = &recipe.tokens {
        let manifest = tokenize::read_manifest(tokens)?;
        let tokenizer = tokens.join(&manifest.tokenizer);
        if let (Some(bytes), Some(path)) = (&given_tok, &recipe.tokenizer_file) {
            check_same_tokenizer(bytes, path, &tokenizer)?;
        }
        return Ok(PreparedData {
            corpus: None,
            tokenizer,
            tokens: tokens.clone(),
            key: None,
            built: Vec::new(),
        });
    }
    if !recipe.sft.is_empty() {
        return run_sft(recipe, given_tok.as_deref());
    }
    recipe.corpus.validate()?;
    if given_tok.is_none() {
        recipe.tokenizer.validate()?;
    }
    recipe.tokenize.validate()?;
    let key = corpus_key(recipe, given_tok.as_deref())?;
    let dir = recipe.cache_dir.join(&key);
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let (corpus, tok_path, tokens) = (
        dir.join("corpus"),
        dir.join("tokenizer.json"),
        dir.join("tokens"),
    );
    let mut built = Vec::new();

    // Each stage's output is complete exactly when its last-written file exists.
    if !corpus.join("manifest.json").is_file() {
        let opts = RunOptions {
            overwrite: true,
            command: command.to_vec(),
        };
        prepare::prepare(&recipe.corpus, &corpus, &opts)?;
        built.push("corpus".to_string());
    }
    if !tok_path.is_file() {
        match given_tok.as_deref() {
            // Used as it is: it was checked when it was trained, and a model's vocabulary must
            // not change under it.
            Some(bytes) => crate::atomic::write(&tok_path, bytes)?,
            None => {
                let tok = tokenizer::train_from_corpus(&corpus, &recipe.tokenizer)?;
                tokenizer::check_corpus(&tok, &corpus)?;
                tokenizer::save(&tok, &tok_path)?;
                built.push("tokenizer".to_string());
            }
        }
    }
    if !tokens.join(tokenize::MANIFEST).is_file() {
        tokenize::tokenize_corpus(&corpus, &tok_path, &tokens, &recipe.tokenize, true)?;
        built.push("tokens".to_string());
    }
    crate::atomic::write_json(&dir.join("recipe.json"), recipe)?;
    Ok(PreparedData {
        corpus: Some(corpus),
        tokenizer: tok_path,
        tokens,
        key: Some(key),
        built,
    })
}

/// The SFT branch of [`run`]: no corpus; the tokenizer is `tokenizer_file` or trained on the
/// train examples; the tokens carry a loss mask.
fn run_sft(recipe: &DataRecipe, given_tok: Option<&[u8]>) -> Result<PreparedData> {
    if given_tok.is_none() {
        recipe.tokenizer.validate()?;
    }
    let inputs = read_sft_files(recipe)?;
    let key = sft_key(recipe, &inputs, given_tok);
    let dir = recipe.cache_dir.join(&key);
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let (tok_path, tokens) = (dir.join("tokenizer.json"), dir.join("tokens"));
    let mut built = Vec::new();
    let parse = || -> Result<SftData> {
        let parse_all = |files: &[(PathBuf, Vec<u8>)]| -> Result<Vec<sft::SftExample>> {
            let mut out = Vec::new();
            for (path, bytes) in files {
                out.extend(sft::parse_jsonl(bytes, path)?);
            }
            Ok(out)
        };
        sft::assemble(
            parse_all(&inputs.train)?,
            parse_all(&inputs.val)?,
            recipe.sft_val_fraction,
            recipe.tokenize.seed,
        )
    };
    let mut data = None;
    if !tok_path.is_file() {
        match given_tok {
            Some(bytes) => crate::atomic::write(&tok_path, bytes)?,
            None => {
                let d = parse()?;
                let tok = tokenizer::train_from_texts(sft::training_texts(&d), &recipe.tokenizer)?;
                check_round_trip(&tok, &d)?;
                tokenizer::save(&tok, &tok_path)?;
                built.push("tokenizer".to_string());
                data = Some(d);
            }
        }
    }
    if !tokens.join(tokenize::MANIFEST).is_file() {
        let d = match data {
            Some(d) => d,
            None => parse()?,
        };
        sft::tokenize(&d, &tok_path, &tokens, &recipe.tokenize, true)?;
        built.push("tokens".to_string());
    }
    crate::atomic::write_json(&dir.join("recipe.json"), recipe)?;
    Ok(PreparedData {
        corpus: None,
        tokenizer: tok_path,
        tokens,
        key: Some(key),
        built,
    })
}

/// A trained tokenizer must reproduce every prompt and completion exactly, as on a corpus.
fn check_round_trip(tok: &tokenizers::Tokenizer, data: &SftData) -> Result<()> {
    let texts: Vec<(String, &str)> = data
        .train
        .iter()
        .chain(&data.val)
        .flat_map(|e| {
            [
                (format!("{} (prompt)", e.origin), e.prompt.as_str()),
                (format!("{} (completion)", e.origin), e.completion.as_str()),
            ]
        })
        .collect();
    let report = tokenizer::round_trip_check(tok, texts)?;
    if !report.ok() {
        return Err(DataError::Tokenizer(format!(
            "round trip failed on {} of {} SFT texts (first: {})",
            report.n_failures,
            report.n_texts,
            report.failures.first().map(String::as_str).unwrap_or("?")
        )));
    }
    Ok(())
}
