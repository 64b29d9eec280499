//! SIGINT/SIGTERM end a run cleanly: the loop notices between steps, saves a checkpoint and
//! returns, instead of dying mid-write.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag [`interrupted`] reads.
pub fn install() {
    // SAFETY: `on_signal` is async-signal-safe (a single atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Has a SIGINT or SIGTERM arrived since [`install`]?
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
