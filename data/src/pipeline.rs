//! The whole data pipeline from one recipe section: prepare the corpus, train the tokenizer,
//! tokenize and pack. Results are cached under a key made from the recipe's data settings and the
//! content of every input file, so a second run with the same inputs is free and any change to an
//! input file or setting builds anew. `anvil data pipeline` runs it; `anvil train run` will too.

use crate::error::{DataError, Result};
use crate::prepare::{self, PrepareConfig, RunOptions};
use crate::tokenize::{self, TokenizeConfig};
use crate::tokenizer::{self, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use xxhash_rust::xxh3::Xxh3;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataRecipe {
    /// Use these packed token shards (an `anvil data tokenize` output) as they are, instead of
    /// building from `corpus.sources`.
    pub tokens: Option<PathBuf>,
    /// Where built data is kept, one folder per cache key.
    pub cache_dir: PathBuf,
    pub corpus: PrepareConfig,
    pub tokenizer: TrainConfig,
    pub tokenize: TokenizeConfig,
}

impl Default for DataRecipe {
    fn default() -> Self {
        DataRecipe {
            tokens: None,
            cache_dir: PathBuf::from("checkpoints/data"),
            corpus: PrepareConfig::default(),
            tokenizer: TrainConfig::default(),
            tokenize: TokenizeConfig::default(),
        }
    }
}

/// Where the pipeline's outputs are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedData {
    /// `None` when the recipe pointed at ready-made token shards.
    pub corpus: Option<PathBuf>,
    pub tokenizer: PathBuf,
    pub tokens: PathBuf,
    /// The cache key (hex); `None` for ready-made token shards.
    pub key: Option<String>,
    /// Stages that were built now rather than found in the cache.
    pub built: Vec<String>,
}

/// Key over the settings that shape the data and exactly the inputs `prepare` reads: the same
/// walk (so .gitignore, symlinks, `--langs` and the stdlib's excluded site-packages agree), every
/// file's bytes, and the license files that govern them.
pub fn cache_key(recipe: &DataRecipe) -> Result<String> {
    let mut h = Xxh3::new();
    let settings = (
        &recipe.corpus,
        &recipe.tokenizer,
        &recipe.tokenize,
        env!("CARGO_PKG_VERSION"),
    );
    h.update(&serde_json::to_vec(&settings).expect("serializable settings"));
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

/// Build (or find in the cache) everything a trainer needs.
pub fn run(recipe: &DataRecipe, command: &[String]) -> Result<PreparedData> {
    if let Some(tokens) = &recipe.tokens {
        let manifest = tokenize::read_manifest(tokens)?;
        return Ok(PreparedData {
            corpus: None,
            tokenizer: tokens.join(&manifest.tokenizer),
            tokens: tokens.clone(),
            key: None,
            built: Vec::new(),
        });
    }
    recipe.corpus.validate()?;
    recipe.tokenizer.validate()?;
    recipe.tokenize.validate()?;
    let key = cache_key(recipe)?;
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
        let tok = tokenizer::train_from_corpus(&corpus, &recipe.tokenizer)?;
        tokenizer::check_corpus(&tok, &corpus)?;
        tokenizer::save(&tok, &tok_path)?;
        built.push("tokenizer".to_string());
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
