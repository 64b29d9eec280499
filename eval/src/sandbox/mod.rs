//! The sandbox that runs untrusted, model-written programs (Python) for execution-based
//! evaluation.
//!
//! Each [`Sandbox::run`] starts a fresh process tree:
//!
//! * **init** — cloned straight into new PID, mount, network, IPC, UTS and cgroup namespaces
//!   (plus a per-sample user namespace whenever the kernel allows it, even as root: it makes
//!   `RLIMIT_NPROC` count per sample instead of per host uid). It is PID 1 of its namespace,
//!   builds a minimal root (tmpfs with read-only binds of the system and interpreter
//!   directories, a fresh `/proc`, a minimal `/dev`, a size-limited tmpfs work dir at
//!   [`WORK_DIR`] holding only the job's files), pivots into it and forks
//! * **the sample** — which applies rlimits, drops to uid/gid 65534 with no groups or
//!   capabilities, sets `no_new_privs`, applies Landlock and a seccomp deny-list and execs.
//!
//! Per-sample cgroups (memory with swap disabled, pids) are created beneath the evaluator's own
//! cgroup, never at a hierarchy root. On v1 init joins them itself by writing "0" to their
//! `tasks` files (opened by the evaluator): moving a single thread skips the global
//! threadgroup rwsem whose write side costs an RCU grace period (~10 ms per sample); on v2 the
//! evaluator writes init's pid to `cgroup.procs` while init builds its root.
//!
//! The evaluator gives stdin as a sealed memfd, captures stdout/stderr and the result channel
//! (fd 3) with caps, enforces the wall clock, and ends a run by killing init: the kernel then
//! kills everything left in the PID namespace; the cgroups are checked empty and removed.
//! Verdicts are decided here, outside the sample.
//!
//! Without namespaces (`--isolation rlimits`, or `auto` where they are refused) init is a
//! subreaper in its own session: when the sample ends it kills the sample's process group and
//! every descendant reparented to it; files are guarded by Landlock, the network by seccomp
//! (AF_UNIX only) and Landlock's TCP rules, and the work dir is a private host temp dir.
//!
//! When a layer is unavailable the sandbox falls back to the next one and says so
//! ([`Sandbox::describe`], printed by the caller); [`Isolation`] chooses how strict to be.
//!
//! Everything between `clone` and `execve` lives in `child.rs` and follows the
//! async-signal-safety rules spelled out there.

mod cgroup;
mod child;
mod fds;
mod landlock;
mod mounts;
mod probe;
mod python;
mod run;
mod seccomp;
mod zygote;

pub use python::{PythonInfo, probe_python, python_info, resolve_python};
pub use zygote::{ForkServer, ServerJob};

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use child::MountPlan;

/// The sample's working directory (and `HOME`, `TMPDIR`) inside the namespace sandbox. In
/// `rlimits` mode it is a private host temp directory instead; jobs should use relative paths.
pub const WORK_DIR: &str = "/tmp";
/// The unprivileged identity samples run as.
pub const SANDBOX_UID: u32 = 65534;
pub const SANDBOX_GID: u32 = 65534;
const HOSTNAME: &str = "sandbox";
const MIB: u64 = 1 << 20;

/// How much isolation to require (`--isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// The strongest combination this host supports; missing layers are reported.
    #[default]
    Auto,
    /// Every layer (namespaces, cgroups, seccomp, Landlock, uid drop, rlimits) or an error.
    Full,
    /// Namespaces + rlimits (+ seccomp/Landlock when available), no cgroups.
    Namespaces,
    /// Plain fork + rlimits + seccomp (+ Landlock when available): the last resort.
    Rlimits,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Full => "full",
            Isolation::Namespaces => "namespaces",
            Isolation::Rlimits => "rlimits",
        }
    }
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Isolation::Auto),
            "full" => Ok(Isolation::Full),
            "namespaces" | "ns" => Ok(Isolation::Namespaces),
            "rlimits" => Ok(Isolation::Rlimits),
            other => Err(format!(
                "unknown isolation level `{other}` (expected auto, full, namespaces or rlimits)"
            )),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-sample resource limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit, enforced by the evaluator.
    pub wall: Duration,
    /// CPU time of the sample process (all its threads), via RLIMIT_CPU (rounded up to whole
    /// seconds; SIGXCPU, then SIGKILL one second later).
    pub cpu: Duration,
    /// Memory of the whole tree (cgroup, swap disabled); RLIMIT_AS is a per-process backstop.
    pub memory_bytes: u64,
    /// Processes + threads (pids cgroup and RLIMIT_NPROC).
    pub max_procs: u64,
    /// Cap for each of stdout, stderr and the result channel: a program that writes more is
    /// stopped with [`Status::OutputLimit`].
    pub output_bytes: usize,
    /// How much of stdout and stderr is kept in the [`Outcome`] (their last bytes): what comes
    /// before is read, counted against `output_bytes` and dropped, so a program writing up to
    /// the cap costs the evaluator this much memory, not the cap.
    pub kept_output_bytes: usize,
    pub file_size_bytes: u64,
    pub open_files: u64,
    /// Size of the private work dir tmpfs.
    pub tmpfs_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(10),
            cpu: Duration::from_secs(10),
            memory_bytes: 512 * MIB,
            max_procs: 64,
            output_bytes: 64 * 1024,
            kept_output_bytes: 64 * 1024,
            file_size_bytes: 16 * MIB,
            open_files: 256,
            tmpfs_bytes: 64 * MIB,
        }
    }
}

/// Construction options beyond the isolation level and limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Host paths made visible read-only at the same place (e.g. another interpreter's
    /// installation). The interpreter behind `python3` (or `$ANVIL_PYTHON`) always is.
    pub extra_read_only: Vec<PathBuf>,
    /// As root, also create a per-sample user namespace (default). It makes RLIMIT_NPROC count
    /// per sample rather than per host uid 65534 shared by all concurrent samples; turn it off
    /// where the kernel's user namespaces are considered too much attack surface. Without root
    /// a user namespace is the only way to get the other namespaces, so this is ignored.
    pub user_namespace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_read_only: Vec::new(),
            user_namespace: true,
        }
    }
}

/// One program to run.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// `argv[0]` is an absolute program path (the resolved interpreter).
    pub argv: &'a [String],
    /// Written into the private work dir (the cwd) before the program starts; relative paths,
    /// subdirectories allowed.
    pub files: &'a [(String, Vec<u8>)],
    /// Fed to the program's stdin, followed by EOF.
    pub stdin: &'a [u8],
    /// Added to (or overriding) the minimal environment.
    pub env: &'a [(String, String)],
}

/// The verdict on one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Wall clock or CPU limit.
    TimedOut,
    /// The kernel OOM killer fired in the sample's memory cgroup.
    OutOfMemory,
    /// stdout, stderr or the result channel went beyond `Limits::output_bytes`.
    OutputLimit,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exited with code {c}"),
            Status::Signaled(s) => write!(f, "killed by signal {s}"),
            Status::TimedOut => f.write_str("timed out"),
            Status::OutOfMemory => f.write_str("out of memory"),
            Status::OutputLimit => f.write_str("output limit exceeded"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// The last `kept_output_bytes` (at most) of what the program wrote to fd 1 and 2.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How many bytes written before those were dropped.
    pub stdout_dropped: usize,
    pub stderr_dropped: usize,
    /// What the program wrote to fd 3 (at most `output_bytes`, all kept).
    pub result: Vec<u8>,
    pub wall: Duration,
}

/// One isolation layer and whether it is in force.
#[derive(Clone, Debug)]
pub struct LayerReport {
    /// "user-ns", "pid-ns", "net-ns", "mount-ns", "ipc-ns", "uts-ns", "cgroup-memory",
    /// "cgroup-pids", "seccomp", "landlock", "uid-drop" or "rlimits".
    pub layer: &'static str,
    pub active: bool,
    pub detail: String,
}

/// A failure of the harness (never a verdict on the program).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    #[error("invalid sandbox job: {0}")]
    InvalidJob(String),
    // The io::Error is part of the message, not a `source`: a chain printer would repeat it.
    #[error("sandbox: {context}: {err}")]
    Io { context: String, err: io::Error },
    #[error("sandbox setup failed in the child while {step}{what}: {err}")]
    Setup {
        step: &'static str,
        what: String,
        err: io::Error,
    },
    #[error("python interpreter: {0}")]
    Python(String),
    #[error("sandbox internal error: {0}")]
    Internal(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let context = context.into();
    move |err| SandboxError::Io { context, err }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Fresh namespaces; `userns` when a user namespace is created too.
    Namespaces { userns: bool },
    /// No namespaces: a subreaper child in its own session.
    Plain,
}

/// A configured sandbox. Cheap to share: `run` takes `&self` and may be called from many
/// threads at once.
pub struct Sandbox {
    isolation: Isolation,
    limits: Limits,
    mode: Mode,
    privileged: bool,
    euid: u32,
    egid: u32,
    mounts: Option<MountPlan>,
    /// Host paths visible read-only inside the namespace sandbox.
    visible: Vec<PathBuf>,
    /// Plain mode: host paths the sample may read (Landlock).
    plain_read: Vec<PathBuf>,
    cg_memory: Option<cgroup::Base>,
    cg_pids: Option<cgroup::Base>,
    memsw: bool,
    bpf: Option<Vec<libc::sock_filter>>,
    landlock: Option<landlock::Plan>,
    rlimits: Vec<(i32, libc::rlimit)>,
    /// The fork server's own seccomp filter and rlimits (see `zygote.rs`).
    server_bpf: Option<Vec<libc::sock_filter>>,
    server_rlimits: Vec<(i32, libc::rlimit)>,
    cpu_limit_us: i64,
    drop_to: Option<(u32, u32)>,
    tmp_base: PathBuf,
    layers: Vec<LayerReport>,
}

// `run` is called from many threads at once.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
};

/// Every layer name, in report order.
pub const LAYERS: [&str; 12] = [
    "user-ns",
    "pid-ns",
    "net-ns",
    "mount-ns",
    "ipc-ns",
    "uts-ns",
    "cgroup-memory",
    "cgroup-pids",
    "seccomp",
    "landlock",
    "uid-drop",
    "rlimits",
];

const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Host /etc entries the interpreter may want (copied if small files, bound read-only if
/// directories, recreated if symlinks). passwd/group/hosts/hostname are generated.
const ETC_ENTRIES: [&str; 12] = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "protocols",
    "services",
    "mime.types",
    "os-release",
    "alternatives",
    "gai.conf",
];
const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
const STAGE_CANDIDATES: [&str; 7] = ["/tmp", "/mnt", "/media", "/srv", "/opt", "/var/tmp", "/run"];

fn warn_once(msg: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_parses() {
        for i in [
            Isolation::Auto,
            Isolation::Full,
            Isolation::Namespaces,
            Isolation::Rlimits,
        ] {
            assert_eq!(i.as_str().parse::<Isolation>().unwrap(), i);
        }
        assert!("sideways".parse::<Isolation>().is_err());
    }
}
