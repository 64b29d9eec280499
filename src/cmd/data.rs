//! `anvil data …`

use anyhow::{Context, Result};
use anvil_data::dedup::DedupConfig;
use anvil_data::filter::FilterConfig;
use anvil_data::lang::{self, Lang};
use anvil_data::prepare::{self, PrepareConfig, RunOptions};
use anvil_data::synth;
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
        DataCommand::Synth(a) => synth_cmd(a),
    }
}

fn prepare_cmd(a: PrepareArgs) -> Result<()> {
    let cfg = PrepareConfig {
        sources: a.sources,
        langs: a.langs,
        val_fraction: a.val_fraction,
        seed: a.seed,
        shard_bytes: a.shard_mb.max(1) << 20,
        filter: FilterConfig {
            max_parse_error_fraction: a.max_parse_error_fraction,
            max_bytes: a.max_bytes,
            max_line_len: a.max_line_len,
            ..FilterConfig::default()
        },
        dedup: DedupConfig { jaccard_threshold: a.jaccard_threshold, near: !a.no_near_dedup, ..DedupConfig::default() },
    };
    let opts = RunOptions { overwrite: a.overwrite, command: super::command_line() };
    let m = prepare::prepare(&cfg, &a.out, &opts).context("data prepare")?;
    let dropped: u64 = m.counts.dropped.values().sum();
    println!(
        "kept {} of {} files ({:.1} of {:.1} MB), dropped {dropped}: {}",
        m.counts.kept,
        m.counts.candidates,
        m.bytes.kept as f64 / 1e6,
        m.bytes.candidates as f64 / 1e6,
        m.counts.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
    );
    for (name, s) in &m.splits {
        println!("  {name}: {} files, {} shard(s)", s.files, s.shards.len());
    }
    println!("wrote {}", a.out.join("manifest.json").display());
    Ok(())
}

fn synth_cmd(a: SynthArgs) -> Result<()> {
    let set = synth::generate(&synth::SynthConfig { n_train: a.n_train, n_heldout: a.n_heldout, seed: a.seed });
    let summary = synth::write(&set, &a.out, a.overwrite).context("data synth")?;
    println!(
        "wrote {} train and {} held-out tasks to {}",
        set.train.len(),
        set.heldout.len(),
        a.out.display()
    );
    let _ = summary;
    Ok(())
}
