//! One writer per run folder. Two `train run --resume` of the same run would prune, save and
//! read each other's checkpoints; the second must refuse before touching anything.
//!
//! The lock is an exclusive `flock` on `<run>/.lock`, which holds the owner's pid for the
//! message. The kernel drops the lock when its process dies however it dies, so a lock file
//! left by a killed run is stale by construction and is simply taken over.

use crate::{Result, TrackingError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".lock";

/// Held for as long as the run is being written; released (and the file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes `dir`'s lock (the folder must exist), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let io = |e| TrackingError::io(&path, e);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io(err));
                }
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let who = if pid.is_empty() {
                    "another process".to_string()
                } else {
                    format!("another process (pid {pid})")
                };
                return Err(TrackingError::invalid(
                    dir,
                    format!("in use by {who}; wait for it to finish or stop it first"),
                ));
            }
            // A holder that was releasing removed the file between our open and our flock: the
            // lock we hold is on a file nobody else will open. Start over on the new one.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(RunLock { file, path });
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so a process that opens the path afterwards makes a new
        // file and the inode check above keeps two holders apart.
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unlocking our own descriptor (closing it would too).
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("in use by another process"), "{err}");
        drop(first);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let _again = RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_dead_holders_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\n").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
