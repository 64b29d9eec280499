//! The decoding thread and the bounded queue in front of it.
//!
//! Decoding is long CPU work (Burn's `flex` backend spreads each forward pass over the rayon
//! pool), so it never runs on the async runtime: one thread takes jobs from a bounded queue and
//! answers over a channel per job. A full queue refuses at once ([`Submit::Full`]) so the HTTP
//! side can answer 429 instead of letting requests pile up. Every job waiting when the thread
//! becomes free joins one batch (up to `batch_rows` sample rows: more rows make each step slower for every request in it): all their prompts and
//! samples share each forward pass, each with its own parameters and seed.

use crate::metrics::Metrics;
use anvil_infer::{Event, FinishReason, GenerateParams, Generation, Generator, Request};
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

/// One request's work: its prompts, decoded in a batch with whatever else is waiting.
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
    batch_rows: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Queue, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    metrics.queue_capacity.store(capacity as u64, Relaxed);
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("anvil-decode".into())
        .spawn(move || worker(&generator, rx, batch_rows, &m))?;
    Ok((Queue { tx, metrics }, handle))
}

/// One batch: `first`, then whatever `next` yields while the rows still fit in `cap` (a job
/// larger than `cap` runs alone). The job that did not fit is returned to lead the next batch.
fn fill_batch<T>(
    first: T,
    mut next: impl FnMut() -> Option<T>,
    rows: impl Fn(&T) -> usize,
    cap: usize,
) -> (Vec<T>, Option<T>) {
    let mut total = rows(&first);
    let mut batch = vec![first];
    while total < cap {
        let Some(job) = next() else { break };
        let r = rows(&job);
        if total + r > cap {
            return (batch, Some(job));
        }
        total += r;
        batch.push(job);
    }
    (batch, None)
}

fn worker(g: &Generator, rx: Receiver<Job>, batch_rows: usize, metrics: &Metrics) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        // Whatever else is already waiting joins this batch (up to `batch_rows` rows), so
        // concurrent requests share forward passes instead of waiting for each other.
        let (mut jobs, next) = fill_batch(
            first,
            || rx.try_recv().ok(),
            |job: &Job| job.inputs.len() * job.params.n,
            batch_rows,
        );
        held = next; // still waiting: counted in the queue depth
        metrics.queue_depth.fetch_sub(jobs.len() as u64, Relaxed);
        jobs.retain(|job| {
            // Gave up while waiting in the queue.
            let gone = job.reply.is_closed();
            if gone {
                metrics.cancelled.fetch_add(1, Relaxed);
            }
            !gone
        });
        if jobs.is_empty() {
            continue;
        }
        metrics.batches.fetch_add(1, Relaxed);
        metrics
            .batched_requests
            .fetch_add(jobs.len() as u64, Relaxed);
        // A panic in one batch must not take the server down with it.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| run(g, &jobs, metrics)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                Err(format!("internal error while decoding: {msg}"))
            });
        let mut per_job = match res {
            Ok(per_job) => per_job.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); jobs.len()],
        };
        for (job, res) in jobs.iter().zip(per_job.drain(..)) {
            if job.reply.is_closed() {
                metrics.cancelled.fetch_add(1, Relaxed);
            }
            let _ = job.reply.send(Msg::Finished(res));
        }
    }
}

/// Decodes every prompt of every job in one batch; one list of generations per job.
fn run(g: &Generator, jobs: &[Job], metrics: &Metrics) -> Result<Vec<Vec<Generation>>, String> {
    // Request r of the batch is prompt `slot[r].1` of job `slot[r].0`.
    let mut slot = Vec::new();
    let mut reqs = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (p, input) in job.inputs.iter().enumerate() {
            slot.push((j, p));
            reqs.push(Request {
                prompt: input,
                params: &job.params,
            });
            metrics.prompt_tokens.fetch_add(input.len() as u64, Relaxed);
        }
    }
    let gone = |r: usize| jobs[slot[r].0].reply.is_closed();
    let send = |r: usize, ev: Event<'_>| {
        let (j, p) = slot[r];
        let job = &jobs[j];
        if !job.stream {
            return;
        }
        let n = job.params.n;
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
    let (outs, timing) = g
        .decode_requests(&reqs, gone, send)
        .map_err(|e| e.to_string())?;
    let mut per_job: Vec<Vec<Generation>> = jobs.iter().map(|_| Vec::new()).collect();
    for (r, completions) in outs.into_iter().enumerate() {
        let tokens: usize = completions.iter().map(|c| c.completion_tokens()).sum();
        metrics.generated_tokens.fetch_add(tokens as u64, Relaxed);
        per_job[slot[r].0].push(Generation {
            completions,
            timing: timing.clone(),
        });
    }
    Ok(per_job)
}

#[cfg(test)]
mod tests {
    use super::fill_batch;

    /// Batches of jobs with these row counts, `cap` rows at most (a bigger job alone).
    fn batches(jobs: &[usize], cap: usize) -> Vec<Vec<usize>> {
        let mut queue = jobs.iter().copied();
        let mut held = None;
        let mut out = Vec::new();
        while let Some(first) = held.take().or_else(|| queue.next()) {
            let (batch, next) = fill_batch(first, || queue.next(), |r: &usize| *r, cap);
            out.push(batch);
            held = next;
        }
        out
    }

    #[test]
    fn batches_never_pass_the_row_cap_and_keep_the_order() {
        assert_eq!(batches(&[1, 64, 2], 32), vec![vec![1], vec![64], vec![2]]);
        assert_eq!(batches(&[3, 3, 3, 3], 8), vec![vec![3, 3], vec![3, 3]]);
        assert_eq!(batches(&[4, 4, 1], 8), vec![vec![4, 4], vec![1]]);
        assert_eq!(batches(&[1, 1, 1], 1), vec![vec![1], vec![1], vec![1]]);
        assert_eq!(batches(&[2, 5], 8), vec![vec![2, 5]]);
    }
}
