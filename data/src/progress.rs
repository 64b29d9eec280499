//! Progress bars that stay out of the way: drawn only on a terminal and never with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence every progress bar in this process (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Bars draw on stderr, but follow stdout: `anvil … > log` is a scripted run and gets none.
fn hidden() -> bool {
    QUIET.load(Ordering::Relaxed)
        || !std::io::stdout().is_terminal()
        || !std::io::stderr().is_terminal()
}

/// A bar counting `len` items (bytes when `bytes` is set), labelled `msg`.
pub fn bar(len: u64, msg: &str, bytes: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if hidden() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let tmpl = if bytes {
        "{msg:>12} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:>12} [{bar:32}] {human_pos}/{human_len} eta {eta}"
    };
    pb.set_style(
        ProgressStyle::with_template(tmpl)
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A spinner for work of unknown length.
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if hidden() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {pos} [{elapsed}]").unwrap());
    pb.set_message(msg.to_string());
    pb
}
