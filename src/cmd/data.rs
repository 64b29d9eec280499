//! `anvil data …`

use anvil_data::dedup::DedupConfig;
use anvil_data::filter::FilterConfig;
use anvil_data::lang::{self, Lang};
use anvil_data::pipeline::{self, DataRecipe};
use anvil_data::prepare::{self, PrepareConfig, RunOptions};
use anvil_data::synth;
use anvil_data::tokenize::{self, TokenizeConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Parse, filter, deduplicate and license-tag sources into Parquet corpus shards.
    #[command(after_help = "Examples:
  anvil data prepare --out corpus                      # the local python3's standard library
  anvil data prepare --source ~/src/repo --source stack.jsonl.gz --langs python,rust --out corpus
  anvil data prepare --source python-stdlib --val-fraction 0.05 --seed 1 --out corpus")]
    Prepare(PrepareArgs),
    /// Pack a corpus into fixed-length token sequences (document boundaries, FIM, AST facts).
    #[command(
        after_help = "Output: Parquet shards with one row per sequence (`input_ids`, `segment_ids`, and with \
--ast `ast_depth`, `ast_path`), plus tokens.json and a copy of the tokenizer.

Examples:
  anvil data tokenize --corpus corpus --tokenizer tokenizer.json --out tokens
  anvil data tokenize --corpus corpus --tokenizer tokenizer.json --seq-len 2048 --fim-rate 0.5 --ast --out tokens"
    )]
    Tokenize(TokenizeArgs),
    /// Run prepare, tokenizer training and tokenize from a recipe's [data] section, cached.
    #[command(
        after_help = "The result is cached under the recipe's data.cache_dir by a hash of the data settings \
and of every input file's content: a second run with the same inputs is immediate.
Overrides use section.key=value, as `anvil train run` does.

Examples:
  anvil data pipeline recipes/quickstart.toml
  anvil data pipeline recipes/quickstart.toml data.tokenize.seq_len=512 data.corpus.seed=1"
    )]
    Pipeline(PipelineArgs),
    /// Generate verifiable Python function tasks in HumanEval's JSONL shape.
    #[command(after_help = "Examples:
  anvil data synth --out synth                         # synth/train.jsonl, synth/heldout.jsonl
  anvil data synth --n-train 20000 --n-heldout 1000 --seed 7 --out synth")]
    Synth(SynthArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    /// A directory, a .jsonl[.gz] or .parquet file with a `content` column, or `python-stdlib`
    /// (repeatable).
    #[arg(long = "source", value_name = "PATH", default_value = "python-stdlib")]
    sources: Vec<String>,
    /// Output directory for shards and manifest.json (must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Languages to keep, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = lang::parse_one, default_value = "python,rust,javascript,typescript,go,java,c,cpp")]
    langs: Vec<Lang>,
    /// Share of files (by content hash) held out for validation.
    #[arg(long, default_value_t = 0.02)]
    val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Target uncompressed content per shard, in MiB.
    #[arg(long, default_value_t = 64)]
    shard_mb: u64,
    /// Replace an existing output directory.
    #[arg(long)]
    overwrite: bool,
    /// Near-duplicate Jaccard threshold (MinHash + LSH).
    #[arg(long, default_value_t = 0.85)]
    jaccard_threshold: f64,
    /// Skip near-duplicate detection (exact dedup still runs).
    #[arg(long)]
    no_near_dedup: bool,
    /// Drop files whose share of tree-sitter ERROR/MISSING nodes is above this.
    #[arg(long, default_value_t = FilterConfig::default().max_parse_error_fraction)]
    max_parse_error_fraction: f64,
    #[arg(long, default_value_t = FilterConfig::default().max_bytes)]
    max_bytes: u64,
    #[arg(long, default_value_t = FilterConfig::default().max_line_len)]
    max_line_len: u32,
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// A corpus directory written by `anvil data prepare`.
    #[arg(long)]
    corpus: PathBuf,
    /// tokenizer.json from `anvil tokenizer train`.
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Tokens per sequence.
    #[arg(long, default_value_t = TokenizeConfig::default().seq_len)]
    seq_len: usize,
    /// Share of documents turned into fill-in-the-middle examples (Bavarian et al. 2022).
    #[arg(long, default_value_t = TokenizeConfig::default().fim_rate)]
    fim_rate: f64,
    /// Share of FIM examples in SPM order (the rest PSM).
    #[arg(long, default_value_t = TokenizeConfig::default().fim_spm_rate)]
    fim_spm_rate: f64,
    /// Store per-token AST depth and child-index path from each file's tree-sitter parse.
    #[arg(long)]
    ast: bool,
    /// Levels of the AST path kept per token.
    #[arg(long, default_value_t = TokenizeConfig::default().ast_max_path)]
    ast_max_path: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
pub struct PipelineArgs {
    /// A recipe file with a [data] section.
    recipe: PathBuf,
    /// Overrides, `section.key=value` (e.g. data.tokenize.seq_len=512).
    overrides: Vec<String>,
}

#[derive(Args)]
pub struct SynthArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 5000)]
    n_train: usize,
    #[arg(long, default_value_t = 500)]
    n_heldout: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    overwrite: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Prepare(a) => prepare_cmd(a),
        DataCommand::Tokenize(a) => tokenize_cmd(a),
        DataCommand::Pipeline(a) => pipeline_cmd(a),
        DataCommand::Synth(a) => synth_cmd(a),
    }
}

fn prepare_cmd(a: PrepareArgs) -> Result<()> {
    super::parent_folder(&a.out)?;
    let cfg = PrepareConfig {
        sources: a.sources,
        langs: a.langs,
        val_fraction: a.val_fraction,
        seed: a.seed,
        shard_bytes: a
            .shard_mb
            .checked_mul(1 << 20)
            .filter(|&b| b > 0)
            .context("--shard-mb must be between 1 and 2^44")?,
        filter: FilterConfig {
            max_parse_error_fraction: a.max_parse_error_fraction,
            max_bytes: a.max_bytes,
            max_line_len: a.max_line_len,
            ..FilterConfig::default()
        },
        dedup: DedupConfig {
            jaccard_threshold: a.jaccard_threshold,
            near: !a.no_near_dedup,
            ..DedupConfig::default()
        },
    };
    let opts = RunOptions {
        overwrite: a.overwrite,
        command: super::command_line(),
    };
    let m = prepare::prepare(&cfg, &a.out, &opts).context("data prepare")?;
    let dropped: u64 = m.counts.dropped.values().sum();
    println!(
        "kept {} of {} files ({:.1} of {:.1} MB), dropped {dropped}{}",
        m.counts.kept,
        m.counts.candidates,
        m.bytes.kept as f64 / 1e6,
        m.bytes.candidates as f64 / 1e6,
        if dropped == 0 {
            String::new()
        } else {
            let reasons: Vec<String> = m
                .counts
                .dropped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            format!(": {}", reasons.join(", "))
        },
    );
    if !m.counts.skipped.is_empty() {
        let skipped: Vec<String> = m
            .counts
            .skipped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "  skipped before filtering: {} (first: {})",
            skipped.join(", "),
            m.skip_examples.first().map(String::as_str).unwrap_or("?")
        );
    }
    if m.counts.other_files > 0 {
        println!(
            "  {} files of other languages or extensions ignored",
            m.counts.other_files
        );
    }
    for (name, s) in &m.splits {
        println!("  {name}: {} files, {} shard(s)", s.files, s.shards.len());
    }
    println!("wrote {}", a.out.join("manifest.json").display());
    Ok(())
}

fn tokenize_cmd(a: TokenizeArgs) -> Result<()> {
    super::parent_folder(&a.out)?;
    let cfg = TokenizeConfig {
        seq_len: a.seq_len,
        fim_rate: a.fim_rate,
        fim_spm_rate: a.fim_spm_rate,
        ast: a.ast,
        ast_max_path: a.ast_max_path,
        seed: a.seed,
        ..TokenizeConfig::default()
    };
    let m = tokenize::tokenize_corpus(&a.corpus, &a.tokenizer, &a.out, &cfg, a.overwrite)
        .context("data tokenize")?;
    for (name, s) in [("train", &m.train), ("val", &m.val)] {
        println!(
            "  {name}: {} docs, {} tokens in {} rows of {} ({} FIM), {} shard(s)",
            s.n_docs,
            s.n_tokens,
            s.n_rows,
            m.seq_len,
            s.n_fim_psm + s.n_fim_spm,
            s.shards.len()
        );
    }
    println!("wrote {}", a.out.join(tokenize::MANIFEST).display());
    Ok(())
}

fn pipeline_cmd(a: PipelineArgs) -> Result<()> {
    let recipe: DataRecipe = super::recipe::load_section(&a.recipe, "data", &a.overrides)?;
    let t0 = std::time::Instant::now();
    let out = pipeline::run(&recipe, &super::command_line()).context("data pipeline")?;
    if out.built.is_empty() {
        println!("cached: {}", out.tokens.display());
    } else {
        println!(
            "built {} in {:.1}s",
            out.built.join(", "),
            t0.elapsed().as_secs_f64()
        );
    }
    if let Some(c) = &out.corpus {
        println!("  corpus     {}", c.display());
    }
    println!("  tokenizer  {}", out.tokenizer.display());
    println!("  tokens     {}", out.tokens.display());
    let m = tokenize::read_manifest(&out.tokens)?;
    println!(
        "  {} train / {} val tokens in rows of {}",
        m.train.n_tokens, m.val.n_tokens, m.seq_len
    );
    if let Some(s) = &m.sft {
        let n_truncated = s.train.n_truncated + s.val.n_truncated;
        println!(
            "  {} train / {} val SFT examples, {n_truncated} cut to fit a row",
            s.train.n_examples, s.val.n_examples
        );
        if let Some(first) = s.train.truncated.first().or(s.val.truncated.first()) {
            println!("  first cut: {first} (up to 20 per split listed in tokens.json)");
        }
    }
    Ok(())
}

fn synth_cmd(a: SynthArgs) -> Result<()> {
    super::parent_folder(&a.out)?;
    // Tasks are held in memory while generated: bound the request rather than abort on allocation.
    const MAX_TASKS: usize = 10_000_000;
    if a.n_train > MAX_TASKS || a.n_heldout > MAX_TASKS {
        bail!("--n-train and --n-heldout are limited to {MAX_TASKS}");
    }
    let set = synth::generate(&synth::SynthConfig {
        n_train: a.n_train,
        n_heldout: a.n_heldout,
        seed: a.seed,
    });
    let summary = synth::write(&set, &a.out, a.overwrite).context("data synth")?;
    println!(
        "wrote {} train and {} held-out tasks to {}",
        set.train.len(),
        set.heldout.len(),
        a.out.display()
    );
    println!(
        "  {} templates in {} families; held-out rule: {}",
        summary.templates.len(),
        summary
            .templates
            .iter()
            .map(|t| t.family.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        summary.heldout_rule
    );
    Ok(())
}
