//! The decoding thread and the bounded queue in front of it.
//!
//! Decoding is long CPU work (Burn's `flex` backend spreads each forward pass over the rayon
//! pool), so it never runs on the async runtime: one thread takes jobs from a bounded queue, one
//! at a time, and answers over a channel per job. A full queue refuses at once ([`Submit::Full`])
//! so the HTTP side can answer 429 instead of letting requests pile up. The `n` samples of a
//! prompt are decoded as one batch by the generator; requests are not batched with each other.

use crate::metrics::Metrics;
use anvil_infer::{Event, FinishReason, GenerateParams, Generation, Generator};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// What the decoding thread tells the request that owns a job.
#[derive(Debug)]
pub enum Msg {
    /// Final text of choice `index` (prompt-major: prompt `p`, sample `i` is `p * n + i`).
    Delta {
        index: usize,
        text: String,
    },
    Done {
        index: usize,
        finish: FinishReason,
    },
    /// The last message of a job: one generation per prompt, or why there is none.
    Finished(Result<Vec<Generation>, String>),
}

/// One request's work: every prompt, decoded in turn.
pub struct Job {
    pub inputs: Vec<Vec<u32>>,
    pub params: GenerateParams,
    /// Send `Delta`/`Done` as text becomes final (otherwise only `Finished`).
    pub stream: bool,
    /// Closed once the request is gone (client disconnected): the job stops early.
    pub reply: UnboundedSender<Msg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    /// The queue is full.
    Full,
    /// The decoding thread is gone.
    Stopped,
}

/// The sending side of the queue; cheap to clone into request handlers.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Queues `job` or refuses at once.
    pub fn submit(&self, job: Job) -> Result<(), Submit> {
        // Counted before sending so the decoding thread's decrement never comes first.
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        self.tx.try_send(job).map_err(|e| {
            self.metrics.queue_depth.fetch_sub(1, Relaxed);
            match e {
                TrySendError::Full(_) => Submit::Full,
                TrySendError::Disconnected(_) => Submit::Stopped,
            }
        })
    }
}

/// Starts the decoding thread with room for `capacity` waiting jobs. The thread ends once every
/// [`Queue`] is dropped and the jobs already queued are done; join the handle to wait for that.
pub fn start(
    generator: Arc<Generator>,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Queue, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    metrics.queue_capacity.store(capacity as u64, Relaxed);
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("anvil-decode".into())
        .spawn(move || worker(&generator, rx, &m))?;
    Ok((Queue { tx, metrics }, handle))
}

fn worker(g: &Generator, rx: Receiver<Job>, metrics: &Metrics) {
    while let Ok(job) = rx.recv() {
        metrics.queue_depth.fetch_sub(1, Relaxed);
        if job.reply.is_closed() {
            // Gave up while waiting in the queue.
            metrics.cancelled.fetch_add(1, Relaxed);
            continue;
        }
        // A panic in one request must not take the server down with it.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| run(g, &job, metrics)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                Err(format!("internal error while decoding: {msg}"))
            });
        if job.reply.is_closed() {
            metrics.cancelled.fetch_add(1, Relaxed);
        }
        let _ = job.reply.send(Msg::Finished(res));
    }
}

fn run(g: &Generator, job: &Job, metrics: &Metrics) -> Result<Vec<Generation>, String> {
    let n = job.params.n;
    let gone = || job.reply.is_closed();
    let mut out = Vec::with_capacity(job.inputs.len());
    for (p, input) in job.inputs.iter().enumerate() {
        if gone() {
            break;
        }
        let send = |ev: Event<'_>| {
            if !job.stream {
                return;
            }
            let msg = match ev {
                Event::Delta { index, text } => Msg::Delta {
                    index: p * n + index,
                    text: text.to_string(),
                },
                Event::Done { index, finish } => Msg::Done {
                    index: p * n + index,
                    finish,
                },
            };
            let _ = job.reply.send(msg);
        };
        metrics.prompt_tokens.fetch_add(input.len() as u64, Relaxed);
        let generation = g
            .generate_cancellable(input, &job.params, gone, send)
            .map_err(|e| e.to_string())?;
        let tokens: usize = generation
            .completions
            .iter()
            .map(|c| c.token_ids.len())
            .sum();
        metrics.generated_tokens.fetch_add(tokens as u64, Relaxed);
        out.push(generation);
    }
    Ok(out)
}
