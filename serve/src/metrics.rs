//! The server's counters, written out in Prometheus' text exposition format by hand: a few
//! counters, gauges and one histogram do not need a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Upper bounds (seconds) of the latency buckets: from a cached short completion to a long one
/// on a CPU.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Observations ≤ each bound of [`BUCKETS`] (not cumulative; summed when rendered).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Answers by `(endpoint, status)`.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    duration: Mutex<Histogram>,
    pub generated_tokens: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Completion requests waiting for the decoding thread.
    pub queue_depth: AtomicU64,
    pub queue_capacity: AtomicU64,
    /// Completion requests received and not yet fully answered (queued, decoding or streaming).
    pub inflight: AtomicU64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled: AtomicU64,
    /// Batches the decoding thread ran, and the requests in them (their ratio is the mean
    /// number of requests sharing a forward pass).
    pub batches: AtomicU64,
    pub batched_requests: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self, endpoint: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
    }

    pub fn observe_duration(&self, seconds: f64) {
        let mut h = self.duration.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Counts a completion request in flight until the guard drops, then records its duration.
    pub fn start(self: &std::sync::Arc<Self>) -> Inflight {
        self.inflight.fetch_add(1, Relaxed);
        Inflight {
            metrics: self.clone(),
            start: Instant::now(),
        }
    }

    /// The exposition text, `text/plain; version=0.0.4`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let head = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut s,
            "anvil_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status code.",
        );
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "anvil_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        head(
            &mut s,
            "anvil_request_duration_seconds",
            "histogram",
            "Time from receiving a completion request to the end of its answer (the last \
             streamed event for streams).",
        );
        {
            let h = self.duration.lock().unwrap_or_else(|e| e.into_inner());
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                cumulative += c;
                let _ = writeln!(
                    s,
                    "anvil_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                s,
                "anvil_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 anvil_request_duration_seconds_sum {}\n\
                 anvil_request_duration_seconds_count {}",
                h.count, h.sum, h.count
            );
        }
        for (name, kind, help, v) in [
            (
                "anvil_generated_tokens_total",
                "counter",
                "Completion tokens generated.",
                &self.generated_tokens,
            ),
            (
                "anvil_prompt_tokens_total",
                "counter",
                "Prompt tokens of completion requests.",
                &self.prompt_tokens,
            ),
            (
                "anvil_cancelled_requests_total",
                "counter",
                "Completion requests whose client went away before the answer was complete.",
                &self.cancelled,
            ),
            (
                "anvil_decode_batches_total",
                "counter",
                "Batches decoded (requests waiting together are decoded as one batch).",
                &self.batches,
            ),
            (
                "anvil_batched_requests_total",
                "counter",
                "Completion requests decoded, summed over batches.",
                &self.batched_requests,
            ),
            (
                "anvil_queue_depth",
                "gauge",
                "Completion requests waiting for the decoding thread.",
                &self.queue_depth,
            ),
            (
                "anvil_queue_capacity",
                "gauge",
                "Most completion requests that may wait (--queue); more are answered 429.",
                &self.queue_capacity,
            ),
            (
                "anvil_inflight_requests",
                "gauge",
                "Completion requests received and not yet fully answered.",
                &self.inflight,
            ),
        ] {
            head(&mut s, name, kind, help);
            let _ = writeln!(s, "{name} {}", v.load(Relaxed));
        }
        s
    }
}

/// A completion request in flight; see [`Metrics::start`].
pub struct Inflight {
    metrics: std::sync::Arc<Metrics>,
    start: Instant,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.metrics.inflight.fetch_sub(1, Relaxed);
        self.metrics
            .observe_duration(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_cumulative_buckets_and_labels() {
        let m = Arc::new(Metrics::default());
        m.count_request("/v1/completions", 200);
        m.count_request("/v1/completions", 200);
        m.count_request("/healthz", 200);
        m.observe_duration(0.007);
        m.observe_duration(0.3);
        m.observe_duration(1000.0);
        drop(m.start());
        let text = m.render();
        let value = |line: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {line} in\n{text}"))
        };
        assert_eq!(
            value("anvil_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"),
            2.0
        );
        // The guard dropped at once observed ~0 s.
        assert_eq!(
            value("anvil_request_duration_seconds_bucket{le=\"0.005\"}"),
            1.0
        );
        assert_eq!(
            value("anvil_request_duration_seconds_bucket{le=\"0.01\"}"),
            2.0
        );
        assert_eq!(
            value("anvil_request_duration_seconds_bucket{le=\"0.5\"}"),
            3.0
        );
        assert_eq!(
            value("anvil_request_duration_seconds_bucket{le=\"120\"}"),
            3.0
        );
        assert_eq!(
            value("anvil_request_duration_seconds_bucket{le=\"+Inf\"}"),
            4.0
        );
        assert_eq!(value("anvil_request_duration_seconds_count"), 4.0);
        assert_eq!(value("anvil_inflight_requests"), 0.0);
        // Every sample line belongs to a family declared by a TYPE line before it.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| name.starts_with(d.as_str())), "{l}");
            }
        }
    }
}
