//! `anvil serve`: an HTTP server over [`anvil_infer::Generator`] speaking OpenAI's completions
//! API, with a bounded queue in front of one decoding thread, Prometheus metrics and a graceful
//! shutdown on SIGTERM or Ctrl-C. See `docs/serve.md`.

pub mod api;
pub mod engine;
pub mod http;
pub mod metrics;

use anvil_infer::Generator;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The `model` name clients must use (or leave out).
    pub model_name: String,
    /// Completion requests that may wait while one decodes; more are answered 429.
    pub queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    pub max_body: usize,
    /// Most sample rows (prompts × `n`) of waiting requests decoded together; 1 decodes one
    /// request at a time (a request larger than this still runs, alone).
    pub batch_rows: usize,
}

impl Options {
    pub fn validate(&self) -> Result<(), ServeError> {
        if self.queue == 0 {
            return Err(ServeError::Config("--queue must be at least 1".into()));
        }
        if self.batch_rows == 0 {
            return Err(ServeError::Config("--batch-rows must be at least 1".into()));
        }
        if self.max_body == 0 {
            return Err(ServeError::Config("--max-body must be at least 1".into()));
        }
        if self.model_name.is_empty() {
            return Err(ServeError::Config("--model-name must not be empty".into()));
        }
        Ok(())
    }
}

/// Binds `addr` (before the model loads, so a busy port fails fast).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let l = std::net::TcpListener::bind(addr).map_err(|err| ServeError::Bind { addr, err })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting connections, finishes every request
/// already received (queued ones too) and returns. `on_listen` gets the bound address (the real
/// port when [`bind`] was asked for port 0) once signals are handled.
pub fn run(
    generator: Generator,
    listener: std::net::TcpListener,
    opts: &Options,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    opts.validate()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let generator = Arc::new(generator);
    let (queue, worker) = engine::start(
        generator.clone(),
        opts.queue,
        opts.batch_rows,
        metrics.clone(),
    )?;
    let state = Arc::new(http::AppState {
        generator,
        queue,
        metrics,
        model: opts.model_name.clone(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        next_id: AtomicU64::new(0),
    });
    // The runtime only moves bytes and parses JSON; decoding has its own thread.
    let io_threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("anvil-http")
        .enable_all()
        .build()?;
    let app = http::router(state, opts.max_body);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let signals = Signals::new()?;
        on_listen(listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal(signals))
            .await?;
        Ok::<_, ServeError>(())
    })?;
    // Every connection is closed, so every queue handle is gone: the decoding thread ends after
    // the jobs it holds.
    let _ = worker.join();
    Ok(())
}

/// SIGTERM and SIGINT, caught from before the address is announced: a signal sent as soon as a
/// client sees the address must already shut down gracefully, not kill the process.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Resolves on the first signal; a second one exits at once.
async fn shutdown_signal(mut signals: Signals) {
    signals.recv().await;
    eprintln!("shutting down: finishing requests in flight (signal again to exit now)");
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("exiting without finishing requests in flight");
        std::process::exit(130);
    });
}
