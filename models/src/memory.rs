//! How much memory a model needs, estimated from its config before anything is allocated, and how
//! much this process may still take. A config too large for the machine (a typo'd `d_model`, a
//! hostile `config.json`) is refused with one line instead of aborting in the allocator or waking
//! the machine-wide OOM killer minutes later.
//!
//! The estimates count what dominates (weights, gradients, AdamW moments, the activations the
//! backward pass keeps, KV caches), not every temporary: they are meant to catch configs that
//! cannot fit, not to predict peak RSS to the megabyte (docs/training.md compares them with
//! measured peaks).

use crate::llama::LlamaConfig;

/// What the memory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Loading weights from disk: the initialized model and the copy read from the file are both
    /// alive at the peak.
    Load,
    /// Decoding `rows` sequences of up to `context` tokens each, with KV caches.
    Decode { rows: usize, context: usize },
    /// Training with AdamW on micro-batches of `batch` rows of `seq_len` tokens.
    Train { batch: usize, seq_len: usize },
    /// The same with the weights frozen (LoRA): no gradient or optimizer state for them; the
    /// `adapters` parameters get weights, gradients, accumulator and AdamW state as in training.
    TrainFrozen {
        batch: usize,
        seq_len: usize,
        adapters: u128,
    },
}

/// The config key (Anvil's names, as in a recipe's `[model]`, or the workload's) that most of
/// the estimate comes from: what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    VocabSize,
    DModel,
    NLayers,
    NExperts,
    /// The workload's size: training batch or decoded rows × context.
    Workload,
}

impl Culprit {
    /// The key in a recipe's `[model]` section (or the workload's recipe key).
    pub fn recipe_key(self) -> &'static str {
        match self {
            Culprit::VocabSize => "model.vocab_size",
            Culprit::DModel => "model.d_model",
            Culprit::NLayers => "model.n_layers",
            Culprit::NExperts => "model.moe.n_experts",
            Culprit::Workload => "train.batch_size",
        }
    }

    /// The key in `model.json` (Anvil checkpoints).
    pub fn model_json_key(self) -> &'static str {
        match self {
            Culprit::Workload => "rows",
            k => &k.recipe_key()["model.".len()..],
        }
    }

    /// The key in an HF `config.json`.
    pub fn hf_key(self) -> &'static str {
        match self {
            Culprit::VocabSize => "vocab_size",
            Culprit::DModel => "hidden_size",
            Culprit::NLayers => "num_hidden_layers",
            Culprit::NExperts => "num_local_experts",
            Culprit::Workload => "rows",
        }
    }
}

/// An estimate of the bytes a workload needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub parameters: u128,
    pub bytes: u128,
    pub culprit: Culprit,
}

/// A workload that does not fit in the memory this process may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "needs about {} ({} parameters{}) but {} of memory is available",
    human_bytes(self.estimate.bytes),
    human_count(self.estimate.parameters),
    self.detail,
    human_bytes(self.available as u128)
)]
pub struct TooLarge {
    pub estimate: Estimate,
    pub available: u64,
    /// What the estimate includes, e.g. ", training: weights, gradients, AdamW state, activations".
    pub detail: &'static str,
}

const F32: u128 = 4;

/// Estimates what `w` needs for the model `c` (whose `vocab_size` is resolved).
pub fn estimate(c: &LlamaConfig, w: Workload) -> Estimate {
    let p = c.parameter_count();
    let (d, v, layers) = (c.d_model as u128, c.vocab_size as u128, c.n_layers as u128);
    let embed = v * d * if c.tie_embeddings { 1 } else { 2 };
    let body = p.saturating_sub(embed);
    let kv = (c.kv_heads() * c.head_dim()) as u128;
    let (ff_active, experts) = match &c.moe {
        None => (c.ff_dim() as u128, 0),
        Some(m) => {
            let e = if m.d_expert == 0 {
                c.ff_dim()
            } else {
                m.d_expert
            } as u128;
            (
                e * (m.top_k + m.n_shared) as u128,
                3 * d * e * m.n_experts as u128 * layers,
            )
        }
    };
    // In f64: a workload's sizes come from the command line unbounded, and a product of them
    // must saturate rather than overflow (`as u128` saturates).
    let (pf, df, vf, lf, kvf, ff) = (
        p as f64,
        d as f64,
        v as f64,
        layers as f64,
        kv as f64,
        ff_active as f64,
    );
    let f32b = F32 as f64;
    let bytes = match w {
        Workload::Load => 2.0 * f32b * pf,
        Workload::Decode { rows, context } => {
            let (rows, ctx) = (rows as f64, context as f64);
            let caches = rows * ctx * lf * 2.0 * kvf * f32b;
            let logits = rows * vf * f32b;
            (2.0 * f32b * pf).max(f32b * pf + caches + logits)
        }
        Workload::Train { batch, seq_len } | Workload::TrainFrozen { batch, seq_len, .. } => {
            // Weights, gradients, the step's gradient accumulator and AdamW's two moments (or
            // the frozen weights once, and all of that for the adapters).
            let state = match w {
                Workload::TrainFrozen { adapters, .. } => f32b * (pf + 5.0 * adapters as f64),
                _ => 5.0 * f32b * pf,
            };
            let (b, s) = (batch as f64, seq_len as f64);
            let tokens = b * s;
            // Per layer the backward keeps about ten d-wide tensors, the key/value projections,
            // the SwiGLU's three hidden-wide ones, and the attention probabilities.
            let per_layer =
                tokens * (10.0 * df + 2.0 * kvf + 3.0 * ff) + b * c.n_heads as f64 * s * s;
            state + f32b * (lf * per_layer + tokens * df * 2.0)
        }
    } as u128;
    let culprit = [
        (Culprit::VocabSize, embed * F32),
        (
            if experts * 2 > body {
                Culprit::NExperts
            } else if layers * 64 > d {
                Culprit::NLayers
            } else {
                Culprit::DModel
            },
            body * F32,
        ),
    ]
    .into_iter()
    .max_by_key(|&(_, b)| b)
    .map_or(Culprit::DModel, |(c, _)| c);
    Estimate {
        parameters: p,
        bytes,
        culprit,
    }
}

/// Refuses `w` when its estimate exceeds [`available_bytes`] (no check where that is unknown).
pub fn check(c: &LlamaConfig, w: Workload) -> Result<Estimate, TooLarge> {
    match available_bytes() {
        Some(available) => check_against(c, w, available),
        None => Ok(estimate(c, w)),
    }
}

fn check_against(c: &LlamaConfig, w: Workload, available: u64) -> Result<Estimate, TooLarge> {
    let mut estimate = estimate(c, w);
    if estimate.bytes <= available as u128 {
        return Ok(estimate);
    }
    // What to change: the workload when one row of it would fit, the model otherwise.
    let one_row = match w {
        Workload::Load => w,
        Workload::Decode { context, .. } => Workload::Decode { rows: 1, context },
        Workload::Train { seq_len, .. } => Workload::Train { batch: 1, seq_len },
        Workload::TrainFrozen {
            seq_len, adapters, ..
        } => Workload::TrainFrozen {
            batch: 1,
            seq_len,
            adapters,
        },
    };
    if w != one_row && self::estimate(c, one_row).bytes <= available as u128 {
        estimate.culprit = Culprit::Workload;
    }
    let detail = match w {
        Workload::Load => ", loading the weights",
        Workload::Decode { .. } => ", decoding with KV caches",
        Workload::Train { .. } => ", training: weights, gradients, AdamW state and activations",
        Workload::TrainFrozen { .. } => ", training adapters: frozen weights and activations",
    };
    Err(TooLarge {
        estimate,
        available,
        detail,
    })
}

/// The bytes this process can still allocate: the least of the memory the kernel reports
/// available, what the process's cgroups still allow, and what its address-space and data
/// rlimits (`ulimit -v`, `ulimit -d`) leave. `None` where none of these can be read.
pub fn available_bytes() -> Option<u64> {
    if let Some(v) = std::env::var("ANVIL_MEMORY_LIMIT_MB")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        // Lets tests exercise the refusal without a machine that is actually short of memory.
        return Some(v.saturating_mul(1 << 20));
    }
    [meminfo_available(), cgroup_headroom(), rlimit_headroom()]
        .into_iter()
        .flatten()
        .min()
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemAvailable:")
}

/// The machine's memory (`MemTotal`), where /proc says.
pub fn total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemTotal:")
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Refuses `count` threads or workers (named `what`, as the user typed it) beyond `per_core` per
/// core: more only adds switching, and 100,000 of them exhaust the process table before any work
/// starts.
pub fn check_per_core(what: &str, count: usize, per_core: usize) -> Result<(), String> {
    let cores = cores();
    let max = cores * per_core;
    if count > max {
        return Err(format!(
            "{what} = {count}: at most {per_core} per core are allowed ({max} on this machine's \
             {cores} cores)"
        ));
    }
    Ok(())
}

/// `key   123 kB` in a /proc file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The tightest `memory.max − memory.current` over this process's cgroup (v2) and its ancestors.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let mut best: Option<u64> = None;
    loop {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        if let (Some(max), Some(cur)) = (read("memory.max"), read("memory.current"))
            && let (Ok(max), Ok(cur)) = (max.trim().parse::<u64>(), cur.trim().parse::<u64>())
        {
            let room = max.saturating_sub(cur);
            best = Some(best.map_or(room, |b| b.min(room)));
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            return best;
        }
    }
}

/// What `RLIMIT_AS` and `RLIMIT_DATA` leave beyond the process's current use.
fn rlimit_headroom() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let room = |resource, used_key| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct we own.
        if unsafe { libc::getrlimit(resource, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        let used = kib_field(&status, used_key).unwrap_or(0);
        Some((lim.rlim_cur as u64).saturating_sub(used))
    };
    [
        room(libc::RLIMIT_AS, "VmSize:"),
        room(libc::RLIMIT_DATA, "VmData:"),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// `1.5 GB`-style sizes (powers of 1000, as `df -H`), with an exponent past petabytes.
pub fn human_bytes(b: u128) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut x = b as f64;
    for u in units {
        if x < 1000.0 {
            return if u == "B" {
                format!("{b} B")
            } else {
                format!("{x:.1} {u}")
            };
        }
        x /= 1000.0;
    }
    format!("{:.1e} B", b as f64)
}

/// `5.3M`-style counts.
pub fn human_count(n: u128) -> String {
    let x = n as f64;
    match n {
        0..1_000_000 => n.to_string(),
        1_000_000..1_000_000_000 => format!("{:.1}M", x / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.1}B", x / 1e9),
        _ => format!("{x:.1e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 320,
            d_model: 32,
            n_layers: 2,
            n_heads: 2,
            max_seq_len: 64,
            ..LlamaConfig::default()
        }
    }

    #[test]
    fn parameter_count_matches_the_built_model() {
        use burn::module::Module;
        let device = burn::tensor::Device::flex();
        let mut configs = vec![small()];
        configs.push(LlamaConfig {
            tie_embeddings: true,
            n_kv_heads: 1,
            d_ff: 48,
            ..small()
        });
        configs.push(LlamaConfig {
            moe: Some(crate::MoeConfig {
                n_experts: 4,
                n_shared: 1,
                d_expert: 24,
                ..Default::default()
            }),
            ..small()
        });
        for c in configs {
            assert_eq!(
                c.parameter_count(),
                c.init(&device).num_params() as u128,
                "{c:?}"
            );
        }
    }

    #[test]
    fn absurd_configs_name_what_to_change() {
        let huge = |f: fn(&mut LlamaConfig)| {
            let mut c = small();
            f(&mut c);
            estimate(&c, Workload::Load)
        };
        let e = huge(|c| c.d_model = 1_000_000_000);
        assert_eq!(e.culprit, Culprit::DModel);
        assert!(e.bytes > 1u128 << 60);
        assert_eq!(huge(|c| c.n_layers = 100_000).culprit, Culprit::NLayers);
        assert_eq!(
            huge(|c| c.vocab_size = 4_000_000_000).culprit,
            Culprit::VocabSize
        );
        // A batch that cannot fit names the batch; a model that cannot fit even one row of it
        // names the model.
        let train = |batch| Workload::Train { batch, seq_len: 64 };
        let e = check_against(&small(), train(100_000), 100 << 20).unwrap_err();
        assert_eq!(e.estimate.culprit, Culprit::Workload);
        let deep = LlamaConfig {
            n_layers: 100_000_000,
            ..small()
        };
        let e = check_against(&deep, train(8), 100 << 20).unwrap_err();
        assert_eq!(e.estimate.culprit, Culprit::NLayers);
        assert!(check_against(&small(), train(8), 100 << 20).is_ok());
    }

    #[test]
    fn human_formats() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_count(5_300_000), "5.3M");
        assert!(human_bytes(u128::MAX).contains('e'));
    }

    #[test]
    fn this_machine_reports_some_memory() {
        let b = available_bytes().expect("linux exposes /proc/meminfo");
        assert!(b > 1 << 20);
    }
}
