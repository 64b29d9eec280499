//! `anvil tokenizer …`

use anvil_data::tokenizer::{self, TrainConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE on a prepared corpus and save it as a Hugging Face tokenizer.json.
    #[command(
        after_help = "Special tokens, with fixed ids: <|endoftext|>=0 <|pad|>=1 <|mask|>=2 \
<|fim_prefix|>=3 <|fim_suffix|>=4 <|fim_middle|>=5 <|file_sep|>=6.
After training, decode(encode(x)) == x is checked on every file of the corpus (--no-check skips it).

Examples:
  anvil tokenizer train --corpus corpus --out tokenizer.json
  anvil tokenizer train --corpus corpus --vocab-size 32768 --max-mb 200 --out tok32k.json"
    )]
    Train(TrainArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// A corpus directory written by `anvil data prepare` (its train split is used).
    #[arg(long)]
    corpus: PathBuf,
    /// Where to write tokenizer.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = TrainConfig::default().vocab_size)]
    vocab_size: usize,
    /// A pair must occur this often to be merged.
    #[arg(long, default_value_t = TrainConfig::default().min_frequency)]
    min_frequency: u64,
    /// Train on at most this many MB of the train split (a deterministic prefix).
    #[arg(long)]
    max_mb: Option<u64>,
    /// Skip the round-trip check over the whole corpus.
    #[arg(long)]
    no_check: bool,
    /// Replace an existing output file.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(cmd: TokenizerCommand) -> Result<()> {
    match cmd {
        TokenizerCommand::Train(a) => train(a),
    }
}

fn train(a: TrainArgs) -> Result<()> {
    // Check the destination before minutes of training, not after.
    if a.out.is_dir() {
        bail!(
            "{}: is a directory; --out takes the path of the tokenizer.json to write",
            a.out.display()
        );
    }
    if a.out.exists() && !a.overwrite {
        bail!(
            "{}: exists (pass --overwrite to replace it)",
            a.out.display()
        );
    }
    super::parent_folder(&a.out)?;
    let max_bytes = match a.max_mb {
        Some(mb) => Some(
            mb.checked_mul(1_000_000)
                .filter(|&b| b > 0)
                .context("--max-mb must be between 1 and 2^44")?,
        ),
        None => None,
    };
    let cfg = TrainConfig {
        vocab_size: a.vocab_size,
        min_frequency: a.min_frequency,
        max_bytes,
    };
    let tok = tokenizer::train_from_corpus(&a.corpus, &cfg).context("tokenizer train")?;
    if !a.no_check {
        let report = tokenizer::check_corpus(&tok, &a.corpus)?;
        println!(
            "round trip exact on all {} files ({:.1} MB, {:.2} bytes/token)",
            report.n_texts,
            report.n_bytes as f64 / 1e6,
            report.bytes_per_token()
        );
    }
    tokenizer::save(&tok, &a.out)?;
    println!(
        "wrote {} (vocab {})",
        a.out.display(),
        tok.get_vocab_size(true)
    );
    Ok(())
}
