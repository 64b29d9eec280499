//! `anvil serve`

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Endpoints: POST /v1/completions (OpenAI's completions API, `stream` as \
server-sent events), GET /v1/models, GET /healthz, GET /metrics (Prometheus). SIGTERM or Ctrl-C \
stops accepting connections, finishes the requests already received, then exits 0.

Examples:
  anvil serve --checkpoint runs/quickstart --addr 127.0.0.1:8000
  anvil serve --checkpoint runs/quickstart --adapter runs/lora-sft --addr 127.0.0.1:8000
  curl -s localhost:8000/v1/completions -d '{\"prompt\": \"def add(a, b):\", \"max_tokens\": 32}'

See docs/serve.md."
)]
pub struct ServeArgs {
    /// A checkpoint folder, a run folder (its newest checkpoint), a Hugging Face folder, or a
    /// LoRA adapter on the base it records.
    #[arg(long)]
    checkpoint: PathBuf,
    /// A LoRA adapter (PEFT's adapter_config.json + adapter_model.safetensors, or a LoRA run
    /// folder) applied unmerged to --checkpoint.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// tokenizer.json to use instead of the one found beside the adapter or the checkpoint, or in
    /// their run.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Completion requests that may wait while one is decoded; more are answered 429.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Most sample rows (prompts × n) of waiting requests decoded together in one batch;
    /// 1 = one request at a time.
    #[arg(long, default_value_t = 32)]
    batch_rows: usize,
    /// The model's name in the API (default: the name of the --adapter folder if given, else of
    /// the --checkpoint folder).
    #[arg(long)]
    model_name: Option<String>,
    /// Threads for the tensor math (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    device: super::DeviceArgs,
}

pub fn run(a: ServeArgs) -> Result<()> {
    // main() restores SIGPIPE's default so `anvil … | head` exits quietly; a server must instead
    // survive writing to a socket whose client just went away.
    // SAFETY: changing a signal disposition; no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    super::set_threads(a.threads, "--threads")?;
    let model_name = match a.model_name {
        Some(n) => n,
        None => std::path::absolute(a.adapter.as_ref().unwrap_or(&a.checkpoint))
            .ok()
            .and_then(|p| Some(p.file_name()?.to_str()?.to_string()))
            .unwrap_or_else(|| "anvil".into()),
    };
    let opts = anvil_serve::Options {
        model_name,
        queue: a.queue,
        max_body: a.max_body,
        batch_rows: a.batch_rows,
    };
    opts.validate()?;
    let listener = anvil_serve::bind(a.addr)?;
    let loaded = anvil_infer::load_adapted(
        &a.checkpoint,
        a.adapter.as_deref(),
        a.tokenizer.as_deref(),
        &a.device.device()?,
    )?;
    // A model the decoder cannot run is refused before the server answers anything.
    anvil_infer::generate::check_decodable(&loaded.model.config)?;
    let adapter = loaded
        .adapter
        .as_ref()
        .map(|ad| format!(" + LoRA adapter {}", ad.dir.display()))
        .unwrap_or_default();
    eprintln!(
        "model `{}`: {}{adapter} (tokenizer {}), context {} tokens",
        opts.model_name,
        loaded.checkpoint.display(),
        loaded.tokenizer_path.display(),
        loaded.model.config.max_seq_len
    );
    anvil_serve::run(loaded.into(), listener, &opts, |addr| {
        // Tests and scripts read the real port from this line.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    })?;
    eprintln!("stopped");
    Ok(())
}
