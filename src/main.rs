//! `anvil`: one binary that prepares data, trains, evaluates and serves code models. This file is
//! only the command line; each stage's work lives in its library crate.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "anvil",
    version,
    about = "Train, fine-tune and evaluate code models end to end",
    long_about = "Anvil trains, fine-tunes and evaluates code models end to end: an AST-parsed corpus \
pipeline, a byte-level BPE tokenizer, Burn models and trainers, a sandboxed pass@k evaluator and \
compact inference, in one binary.",
    after_help = "Start with:\n  anvil data pipeline recipes/quickstart.toml\n\nEach command has --help with examples."
)]
struct Cli {
    /// Hide progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build training data: prepare a corpus, tokenize it, generate synthetic tasks.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Evaluate generated code: sandboxed execution and unbiased pass@k.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
    /// The composite reward for RL: score samples (tests, security, quality, license), or analyze
    /// Python files statically.
    #[command(subcommand)]
    Reward(cmd::reward::RewardCommand),
    /// Train models from a recipe file.
    #[command(subcommand)]
    Train(cmd::train::TrainCommand),
    /// Write a checkpoint in another format: HF safetensors, GGUF (f16/q8_0/q4_0) for llama.cpp,
    /// a quantized Anvil checkpoint; a LoRA fine-tune merged or as a PEFT adapter.
    Export(cmd::export::ExportArgs),
    /// Complete a prompt with a checkpoint: sampling, FIM, syntax-aware beam search; fill holes
    /// with a diffusion denoiser.
    Generate(cmd::generate::GenerateArgs),
    /// Plans → patches: mask the named functions, regenerate them with the diffusion
    /// denoiser, validate, fall back to an autoregressive model, write unified diffs.
    Build(cmd::build::BuildArgs),
    /// Tracked runs: list, show, compare, plot, sync to MLflow.
    #[command(subcommand)]
    Runs(cmd::runs::RunsCommand),
    /// Serve a model over HTTP: OpenAI-compatible completions, health and Prometheus metrics.
    Serve(cmd::serve::ServeArgs),
    /// Train a byte-level BPE tokenizer with FIM and mask tokens.
    #[command(subcommand)]
    Tokenizer(cmd::tokenizer::TokenizerCommand),
}

/// Training allocates and frees the same multi-megabyte tensors every step. glibc serves those
/// with fresh `mmap`s and gives them back at once, so every step pays page faults and zeroing
/// for memory it just had; keeping them on the heap and never trimming it removes that cost.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("ANVIL_DEFAULT_MALLOC").is_none() {
        // SAFETY: mallopt only changes allocator thresholds; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of our output goes away (`anvil … | head`):
    // exit quietly on SIGPIPE instead of panicking on a failed print.
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tune_allocator();
    let cli = Cli::parse();
    anvil_data::progress::set_quiet(cli.quiet);
    let res = match cli.command {
        Command::Data(c) => cmd::data::run(c),
        Command::Tokenizer(c) => cmd::tokenizer::run(c),
        Command::Eval(c) => cmd::eval::run(c),
        Command::Reward(c) => cmd::reward::run(c),
        Command::Runs(c) => cmd::runs::run(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Train(c) => cmd::train::run(c),
        Command::Export(a) => cmd::export::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Build(a) => cmd::build::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
