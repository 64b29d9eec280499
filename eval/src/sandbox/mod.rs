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
mod landlock;
mod python;
mod seccomp;

pub use python::{PythonInfo, probe_python, python_info, resolve_python};

use std::collections::HashSet;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libc::c_char;

use child::{MountOp, MountPlan, Record};

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
    /// Cap for each of stdout, stderr and the result channel.
    pub output_bytes: usize,
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
    /// At most `output_bytes` each.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What the program wrote to fd 3.
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
    #[error("sandbox: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed in the child while {step}{what}: {source}")]
    Setup {
        step: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("python interpreter: {0}")]
    Python(String),
    #[error("sandbox internal error: {0}")]
    Internal(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let context = context.into();
    move |source| SandboxError::Io { context, source }
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

struct RunResult {
    outcome: Outcome,
    warnings: Vec<(i32, i32)>,
}

impl Sandbox {
    /// Probes the available layers once and builds the report. `Isolation::Full` fails unless
    /// every layer works; `Namespaces` fails without namespaces.
    pub fn new(isolation: Isolation, limits: Limits) -> Result<Sandbox, SandboxError> {
        Self::with_options(isolation, limits, &Options::default())
    }

    /// [`Sandbox::new`] with [`Options`].
    pub fn with_options(
        isolation: Isolation,
        limits: Limits,
        options: &Options,
    ) -> Result<Sandbox, SandboxError> {
        let extra_read_only = &options.extra_read_only;
        validate_limits(&limits)?;
        // SAFETY: trivial getters.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let privileged = euid == 0;
        let python = python_info();
        let mut extra: Vec<PathBuf> = Vec::new();
        if let Ok(p) = &python {
            extra.extend(p.dirs.iter().cloned());
        }
        for p in extra_read_only {
            let c = fs::canonicalize(p).map_err(io_err(format!("extra path {}", p.display())))?;
            if !extra.contains(&c) {
                extra.push(c);
            }
        }
        let tmp_base = std::env::temp_dir().join(format!("anvil-sandbox-{euid}"));
        let mut sb = Sandbox {
            isolation,
            limits,
            mode: Mode::Plain,
            privileged,
            euid,
            egid,
            mounts: None,
            visible: Vec::new(),
            plain_read: Vec::new(),
            cg_memory: None,
            cg_pids: None,
            memsw: false,
            bpf: None,
            landlock: None,
            rlimits: Vec::new(),
            cpu_limit_us: 0,
            drop_to: None,
            tmp_base,
            layers: Vec::new(),
        };

        // Namespaces: a dry run of the real setup, with a user namespace first.
        let mut ns_failures: Vec<String> = Vec::new();
        let mut proc_warning: Option<String> = None;
        if isolation != Isolation::Rlimits {
            let (plan, visible) = build_mount_plan(&extra, &sb.limits)?;
            sb.mounts = Some(plan);
            sb.visible = visible;
            let attempts: &[bool] = match (privileged, options.user_namespace) {
                (true, true) => &[true, false],
                (true, false) => &[false],
                (false, _) => &[true],
            };
            for &userns in attempts {
                sb.mode = Mode::Namespaces { userns };
                sb.drop_to = Some((SANDBOX_UID, SANDBOX_GID));
                match sb.dry_run() {
                    Ok(warnings) => {
                        if let Some((step, e)) = warnings.first() {
                            proc_warning = Some(format!(
                                "{} failed: {}",
                                child::step_name(*step),
                                io::Error::from_raw_os_error(*e)
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        let what = if userns {
                            "with a user namespace"
                        } else {
                            "as root without a user namespace"
                        };
                        ns_failures.push(format!("{what}: {e}"));
                        sb.mode = Mode::Plain;
                    }
                }
            }
            if sb.mode == Mode::Plain {
                sb.mounts = None;
                sb.visible.clear();
                if isolation != Isolation::Auto {
                    return Err(SandboxError::Unavailable(format!(
                        "--isolation {isolation} needs namespaces, which failed ({})",
                        ns_failures.join("; ")
                    )));
                }
            }
        }
        let ns = sb.mode != Mode::Plain;

        // Cgroups: only with a PID namespace, and not in `namespaces` mode.
        let cg_state: (Result<(), String>, Result<(), String>) = if !ns {
            let why = if isolation == Isolation::Rlimits {
                "not used with --isolation rlimits".to_string()
            } else {
                "not used without namespaces".to_string()
            };
            (Err(why.clone()), Err(why))
        } else if isolation == Isolation::Namespaces {
            let why = "disabled by --isolation namespaces".to_string();
            (Err(why.clone()), Err(why))
        } else {
            let d = cgroup::discover();
            sb.memsw = d.memsw;
            let m = d.memory.map(|b| sb.cg_memory = Some(b));
            let p = d.pids.map(|b| sb.cg_pids = Some(b));
            (m, p)
        };

        // Seccomp, Landlock, identity, rlimits.
        let seccomp_state = seccomp::available();
        if seccomp_state.is_ok() {
            sb.bpf = Some(seccomp::build(&seccomp::FilterOptions {
                unix_sockets_only: !ns,
                deny_subreaper: !ns,
            }));
        }
        let landlock_abi = landlock::abi();
        if let Ok(abi) = landlock_abi {
            let mut plan = landlock::Plan::new(abi);
            if ns {
                plan.allow("/", landlock::READ_ONLY, true);
                plan.allow(WORK_DIR, landlock::ALL, true);
                plan.allow(
                    "/dev",
                    landlock::READ_FILE
                        | landlock::WRITE_FILE
                        | landlock::READ_DIR
                        | landlock::TRUNCATE
                        | landlock::IOCTL_DEV,
                    true,
                );
            } else {
                let mut read: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
                read.push(PathBuf::from("/etc"));
                read.extend(extra.iter().cloned());
                for p in &read {
                    if let Ok(m) = fs::metadata(p) {
                        plan.allow(&p.to_string_lossy(), landlock::READ_ONLY, m.is_dir());
                    }
                }
                for d in ["null", "zero", "full"] {
                    plan.allow(
                        &format!("/dev/{d}"),
                        landlock::READ_FILE | landlock::WRITE_FILE | landlock::TRUNCATE,
                        false,
                    );
                }
                for d in ["random", "urandom"] {
                    plan.allow(&format!("/dev/{d}"), landlock::READ_FILE, false);
                }
                sb.plain_read = read;
            }
            sb.landlock = Some(plan);
        }
        sb.drop_to = if ns || privileged {
            Some((SANDBOX_UID, SANDBOX_GID))
        } else {
            None
        };
        sb.configure_rlimits();
        if !ns {
            // A shared temp dir: refuse a base that someone else created (or a symlink).
            let _ = fs::create_dir(&sb.tmp_base);
            let m = fs::symlink_metadata(&sb.tmp_base)
                .map_err(io_err(format!("creating {}", sb.tmp_base.display())))?;
            if !m.is_dir() || std::os::unix::fs::MetadataExt::uid(&m) != euid {
                return Err(SandboxError::Unavailable(format!(
                    "{} is not a directory owned by uid {euid}",
                    sb.tmp_base.display()
                )));
            }
            fs::set_permissions(&sb.tmp_base, fs::Permissions::from_mode(0o711))
                .map_err(io_err(format!("chmod {}", sb.tmp_base.display())))?;
        }

        sb.layers = sb.build_report(
            &ns_failures,
            proc_warning,
            &cg_state,
            &seccomp_state,
            &landlock_abi,
            &python,
        );
        if isolation == Isolation::Full {
            let missing: Vec<String> = sb
                .layers
                .iter()
                .filter(|l| !(l.active || l.layer == "user-ns" && privileged))
                .map(|l| format!("{} ({})", l.layer, l.detail))
                .collect();
            if !missing.is_empty() {
                return Err(SandboxError::Unavailable(format!(
                    "--isolation full: missing layers: {}",
                    missing.join("; ")
                )));
            }
        }
        Ok(sb)
    }

    fn configure_rlimits(&mut self) {
        let l = &self.limits;
        let cpu = l.cpu.as_secs() + u64::from(l.cpu.subsec_nanos() > 0);
        let cpu = cpu.max(1);
        self.cpu_limit_us = (cpu * 1_000_000) as i64;
        let address_space = if self.cg_memory.is_some() {
            // The cgroup is the real limit (and tells us about OOM); this only stops a single
            // absurd allocation early.
            l.memory_bytes.saturating_mul(2).saturating_add(256 * MIB)
        } else {
            l.memory_bytes.saturating_add(256 * MIB)
        };
        let lim = |soft: u64, hard: u64| libc::rlimit {
            rlim_cur: soft as _,
            rlim_max: hard as _,
        };
        let mut v = vec![
            (libc::RLIMIT_CPU as i32, lim(cpu, cpu + 1)),
            (libc::RLIMIT_AS as i32, lim(address_space, address_space)),
            (
                libc::RLIMIT_FSIZE as i32,
                lim(l.file_size_bytes, l.file_size_bytes),
            ),
            (libc::RLIMIT_NOFILE as i32, lim(l.open_files, l.open_files)),
            (libc::RLIMIT_CORE as i32, lim(0, 0)),
        ];
        // Without a user namespace and without a uid change RLIMIT_NPROC would count all of the
        // invoking user's processes.
        if self.drop_to.is_some() {
            v.push((libc::RLIMIT_NPROC as i32, lim(l.max_procs, l.max_procs)));
        }
        self.rlimits = v;
    }

    fn build_report(
        &self,
        ns_failures: &[String],
        proc_warning: Option<String>,
        cg: &(Result<(), String>, Result<(), String>),
        seccomp_state: &Result<(), String>,
        landlock_abi: &Result<i32, String>,
        python: &Result<&'static PythonInfo, SandboxError>,
    ) -> Vec<LayerReport> {
        let mut v = Vec::new();
        let mut push = |layer: &'static str, active: bool, detail: String| {
            v.push(LayerReport {
                layer,
                active,
                detail,
            })
        };
        let ns_fail = if ns_failures.is_empty() {
            "not used with --isolation rlimits".to_string()
        } else {
            format!("probe failed: {}", ns_failures.join("; "))
        };
        match self.mode {
            Mode::Namespaces { userns: true } => push(
                "user-ns",
                true,
                format!(
                    "per-sample user namespace; sandbox uid {SANDBOX_UID} is host uid {}; RLIMIT_NPROC counts per sample",
                    if self.privileged {
                        SANDBOX_UID
                    } else {
                        self.euid
                    }
                ),
            ),
            Mode::Namespaces { userns: false } => push(
                "user-ns",
                false,
                format!(
                    "{}; running as real root, samples drop to host uid {SANDBOX_UID}, so RLIMIT_NPROC is shared by concurrent samples",
                    ns_failures
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "disabled (Options::user_namespace = false)".into())
                ),
            ),
            Mode::Plain => push("user-ns", false, ns_fail.clone()),
        }
        let ns = self.mode != Mode::Plain;
        let pid_detail = match (&proc_warning, ns) {
            (_, false) => format!(
                "{ns_fail}; {}",
                if Path::new("/proc/thread-self/children").exists() {
                    "a subreaper init kills the sample's group and every descendant reparented to it"
                } else {
                    "WARNING: /proc/*/children is missing, so daemons that setsid and outlive their parent escape"
                }
            ),
            (Some(w), true) => format!("sample runs under a minimal init (PID 1); no /proc inside ({w})"),
            (None, true) => "sample runs under a minimal init (PID 1); killing it tears the namespace down; private /proc".into(),
        };
        push("pid-ns", ns, pid_detail);
        push(
            "net-ns",
            ns,
            if ns {
                "empty network namespace (no interfaces up)".into()
            } else {
                ns_fail.clone()
            },
        );
        let mount_detail = if ns {
            let binds: Vec<String> = self
                .visible
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "tmpfs root, read-only: {}; /etc minimal; /dev: {}; work dir {WORK_DIR}: tmpfs of {} MiB, noexec",
                binds.join(", "),
                DEV_NODES.join(" "),
                self.limits.tmpfs_bytes / MIB
            )
        } else {
            ns_fail.clone()
        };
        push("mount-ns", ns, mount_detail);
        push(
            "ipc-ns",
            ns,
            if ns {
                "private SysV IPC and POSIX message queues".into()
            } else {
                ns_fail.clone()
            },
        );
        push(
            "uts-ns",
            ns,
            if ns {
                format!("hostname `{HOSTNAME}`")
            } else {
                ns_fail.clone()
            },
        );
        let cg_detail = |b: &Option<cgroup::Base>, what: String| -> String {
            match b {
                Some(b) => format!(
                    "cgroup {:?} under {}/anvil-sbx-*: {what}",
                    b.version,
                    b.dir.display()
                ),
                None => String::new(),
            }
        };
        match &cg.0 {
            Ok(()) => push(
                "cgroup-memory",
                true,
                cg_detail(
                    &self.cg_memory,
                    format!(
                        "{} MiB{}, OOM kills reported",
                        self.limits.memory_bytes / MIB,
                        if self.memsw
                            || self
                                .cg_memory
                                .as_ref()
                                .is_some_and(|b| b.version == cgroup::Version::V2)
                        {
                            ", swap disabled"
                        } else {
                            " (memsw accounting off: swap not limited)"
                        }
                    ),
                ),
            ),
            Err(e) => push("cgroup-memory", false, e.clone()),
        }
        match &cg.1 {
            Ok(()) => push(
                "cgroup-pids",
                true,
                cg_detail(&self.cg_pids, format!("pids.max {}", self.limits.max_procs)),
            ),
            Err(e) => push("cgroup-pids", false, e.clone()),
        }
        match (seccomp_state, &self.bpf) {
            (Ok(()), Some(b)) => push(
                "seccomp",
                true,
                format!(
                    "deny-list ({} BPF instructions): ptrace, mount family, unshare/setns, namespace clone flags, bpf, perf, io_uring, keyrings, kexec, modules, reboot, swap, userfaultfd, process_vm_*, kill(-1) ... → EPERM; clone3 → ENOSYS; foreign syscall ABIs killed{}",
                    b.len(),
                    if ns {
                        ""
                    } else {
                        "; sockets other than AF_UNIX and PR_SET_CHILD_SUBREAPER denied"
                    }
                ),
            ),
            (Err(e), _) => push("seccomp", false, e.clone()),
            (Ok(()), None) => push("seccomp", false, "filter not built".into()),
        }
        match (landlock_abi, &self.landlock) {
            (Ok(abi), Some(p)) => {
                let scope = if self.plain_read.is_empty() {
                    format!("read-only /, read-write {WORK_DIR}")
                } else {
                    let paths: Vec<String> = self
                        .plain_read
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    format!(
                        "read-only {}, /dev/null etc.; read-write: the run's own work dir",
                        paths.join(", ")
                    )
                };
                push(
                    "landlock",
                    true,
                    format!("ABI v{abi}: {}; {scope}", p.describe()),
                )
            }
            (Err(e), _) => push("landlock", false, e.clone()),
            (Ok(_), None) => push("landlock", false, "not configured".into()),
        }
        match self.drop_to {
            Some((u, g)) => {
                let groups = if self.privileged {
                    "no supplementary groups"
                } else {
                    // setgroups is denied in an unprivileged user namespace.
                    "the invoking user's supplementary groups are kept (shown as 65534)"
                };
                let mut d = format!("uid {u} gid {g}, {groups}, no capabilities, no_new_privs");
                if !ns
                    && let Ok(p) = python
                    && !world_reachable(&p.executable)
                {
                    d.push_str(&format!(
                        "; WARNING: {} is not reachable by other users, so it cannot run here (use a system-wide interpreter)",
                        p.executable.display()
                    ));
                }
                push("uid-drop", true, d)
            }
            None => push(
                "uid-drop",
                false,
                format!(
                    "not root and no user namespace: samples run as the invoking uid {}",
                    self.euid
                ),
            ),
        }
        let l = &self.limits;
        let nproc = if self.drop_to.is_some() {
            format!(", NPROC {}", l.max_procs)
        } else {
            " (NPROC not set: it would count all of the invoking user's processes)".to_string()
        };
        let as_limit = self
            .rlimits
            .iter()
            .find(|(r, _)| *r == libc::RLIMIT_AS as i32)
            .map(|(_, l)| l.rlim_cur / MIB)
            .unwrap_or(0);
        push(
            "rlimits",
            true,
            format!(
                "CPU {}s (SIGXCPU, SIGKILL 1s later), AS {as_limit} MiB, FSIZE {} MiB, NOFILE {}, CORE 0{nproc}; wall {:?} enforced by the evaluator",
                self.cpu_limit_us / 1_000_000,
                l.file_size_bytes / MIB,
                l.open_files,
                l.wall
            ),
        );
        v
    }

    /// The isolation level this sandbox was created with.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every layer, active or not, with details.
    pub fn report(&self) -> &[LayerReport] {
        &self.layers
    }

    /// One line per missing layer, for a loud warning at startup (empty when all are active).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for l in self.layers.iter().filter(|l| !l.active) {
            let fallback = match l.layer {
                "user-ns" if self.mode != Mode::Plain => "uid drop to 65534 by real root",
                "user-ns" => "uid drop (as root) and Landlock",
                "pid-ns" => {
                    "a subreaper init that kills the sample's process group and all reparented descendants; samples can signal other samples of the same uid"
                }
                "net-ns" => "seccomp (AF_UNIX sockets only) and Landlock TCP rules",
                "mount-ns" => {
                    "Landlock for file access; the work dir is a host temp dir, disk use bounded only per file by RLIMIT_FSIZE"
                }
                "ipc-ns" => "nothing (SysV IPC and POSIX message queues are shared with the host)",
                "uts-ns" => "nothing (the host name is visible, read-only)",
                "cgroup-memory" => {
                    "RLIMIT_AS per process (a MemoryError instead of an OOM verdict)"
                }
                "cgroup-pids" if self.mode != Mode::Plain => "RLIMIT_NPROC + PID namespace",
                "cgroup-pids" => "RLIMIT_NPROC",
                "seccomp" => "namespaces and uid drop only; dangerous syscalls reachable",
                "landlock" if self.mode != Mode::Plain => "the mount namespace for file visibility",
                "landlock" => "file permissions only: the sample can read whatever uid 65534 can",
                "uid-drop" => "the other layers; the sample runs with the invoking user's identity",
                _ => "the remaining layers",
            };
            out.push_str(&format!(
                "sandbox: {} unavailable ({}); relying on {}\n",
                l.layer, l.detail, fallback
            ));
        }
        out
    }

    /// Runs one job to completion. Errors are harness failures, never verdicts.
    pub fn run(&self, job: &Job) -> Result<Outcome, SandboxError> {
        self.execute(job, false).map(|r| r.outcome)
    }

    fn dry_run(&self) -> Result<Vec<(i32, i32)>, SandboxError> {
        let argv = ["/bin/true".to_string()];
        let job = Job {
            argv: &argv,
            files: &[],
            stdin: b"",
            env: &[],
        };
        self.execute(&job, true).map(|r| r.warnings)
    }

    fn is_visible(&self, p: &Path) -> bool {
        if self.visible.iter().any(|v| p.starts_with(v)) {
            return true;
        }
        fs::canonicalize(p).is_ok_and(|c| self.visible.iter().any(|v| c.starts_with(v)))
    }

    fn write_id_maps(&self, pid: libc::pid_t) -> io::Result<()> {
        let base = format!("/proc/{pid}");
        let (uid_map, gid_map) = if self.privileged {
            // Root inside (init needs a mapped identity that can reach the bind sources) and
            // the sandbox identity; the sample can never regain uid 0 (no caps after exec,
            // nosuid mounts, no_new_privs).
            (
                format!("0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"),
                format!("0 0 1\n{SANDBOX_GID} {SANDBOX_GID} 1\n"),
            )
        } else {
            fs::write(format!("{base}/setgroups"), "deny")?;
            (
                format!("{SANDBOX_UID} {} 1\n", self.euid),
                format!("{SANDBOX_GID} {} 1\n", self.egid),
            )
        };
        fs::write(format!("{base}/uid_map"), uid_map)?;
        fs::write(format!("{base}/gid_map"), gid_map)?;
        Ok(())
    }

    fn execute(&self, job: &Job, dry_run: bool) -> Result<RunResult, SandboxError> {
        let ns = self.mode != Mode::Plain;
        let Some(exe) = job.argv.first() else {
            return Err(SandboxError::InvalidJob("empty argv".into()));
        };
        if !exe.starts_with('/') {
            return Err(SandboxError::InvalidJob(format!(
                "argv[0] must be an absolute path, got `{exe}`"
            )));
        }
        if ns && !dry_run && !self.is_visible(Path::new(exe)) {
            return Err(SandboxError::InvalidJob(format!(
                "{exe} is not visible inside the sandbox (visible: {}); add its installation to Options::extra_read_only",
                self.visible
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let cstr = |s: &str, what: &str| {
            CString::new(s)
                .map_err(|_| SandboxError::InvalidJob(format!("{what} contains a NUL byte")))
        };
        let argv_c = job
            .argv
            .iter()
            .map(|a| cstr(a, "an argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_p: Vec<*const c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
        argv_p.push(std::ptr::null());
        let (files_rel, dirs_rel) = validate_files(job.files)?;

        // Unique across all sandboxes of this process (names of cgroups and work dirs).
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("anvil-sbx-{}-{n}", std::process::id());

        // Plain mode: a private host directory, written by us.
        let plain_dir = if ns || dry_run {
            None
        } else {
            Some(PlainDir::create(
                &self.tmp_base.join(&name),
                self.drop_to,
                &dirs_rel,
                job.files,
            )?)
        };
        let workdir = match &plain_dir {
            Some(d) => d.path.to_string_lossy().into_owned(),
            None => WORK_DIR.to_string(),
        };
        let workdir_c = cstr(&workdir, "the work dir")?;

        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), workdir.clone()),
            ("TMPDIR".into(), workdir.clone()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ("PYTHONHASHSEED".into(), "0".into()),
            // Bounds glibc's per-thread heap reservations, which count against RLIMIT_AS.
            ("MALLOC_ARENA_MAX".into(), "2".into()),
        ];
        for (k, v) in job.env {
            if k.is_empty() || k.contains('=') {
                return Err(SandboxError::InvalidJob(format!(
                    "bad environment variable name `{k}`"
                )));
            }
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        let env_c = env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}"), "the environment"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env_p: Vec<*const c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
        env_p.push(std::ptr::null());

        let files_c = files_rel
            .iter()
            .zip(job.files)
            .map(|(rel, (_, data))| Ok((cstr(rel, "a file name")?, data.as_slice())))
            .collect::<Result<Vec<_>, SandboxError>>()?;
        let dirs_c = dirs_rel
            .iter()
            .map(|d| cstr(d, "a file name"))
            .collect::<Result<Vec<_>, _>>()?;

        let mut cg = if ns && !dry_run && (self.cg_memory.is_some() || self.cg_pids.is_some()) {
            Some(
                cgroup::RunCgroup::create(
                    self.cg_memory.as_ref(),
                    self.cg_pids.as_ref(),
                    self.memsw,
                    &name,
                    self.limits.memory_bytes,
                    self.limits.max_procs,
                )
                .map_err(io_err("creating the sample's cgroup"))?,
            )
        } else {
            None
        };

        let ll_run;
        let landlock_plan = match (&self.landlock, &plain_dir) {
            (Some(p), Some(d)) => {
                let mut q = p.clone();
                q.allow(&d.path.to_string_lossy(), landlock::ALL, true);
                ll_run = q;
                Some(&ll_run)
            }
            (p, _) => p.as_ref(),
        };
        let fprog = self.bpf.as_ref().map(|b| libc::sock_fprog {
            len: b.len() as u16,
            filter: b.as_ptr() as *mut libc::sock_filter,
        });

        let join = match &cg {
            Some(c) => c
                .v1_join_files()
                .map_err(io_err("opening the sample's cgroup"))?,
            None => Vec::new(),
        };
        let mut cgroup_join = [-1; 2];
        for (slot, f) in cgroup_join.iter_mut().zip(&join) {
            *slot = f.as_raw_fd();
        }
        let stdin = sealed_memfd(job.stdin).map_err(io_err("creating the stdin memfd"))?;
        let (out_r, out_w) = pipe().map_err(io_err("pipe"))?;
        let (err_r, err_w) = pipe().map_err(io_err("pipe"))?;
        let (res_r, res_w) = pipe().map_err(io_err("pipe"))?;
        let (rep_r, rep_w) = pipe().map_err(io_err("pipe"))?;
        let (sync_r, sync_w) = socket_pair().map_err(io_err("socketpair"))?;
        for fd in [&out_r, &err_r, &res_r, &rep_r] {
            set_nonblocking(fd).map_err(io_err("fcntl"))?;
        }

        let ctx = child::ChildCtx {
            fds: [
                stdin.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                res_w.as_raw_fd(),
                rep_w.as_raw_fd(),
                sync_r.as_raw_fd(),
            ],
            cgroup_join,
            mounts: if ns { self.mounts.as_ref() } else { None },
            files: &files_c,
            dirs: &dirs_c,
            workdir: &workdir_c,
            rlimits: &self.rlimits,
            drop_to: self.drop_to,
            setgroups_may_fail: !self.privileged,
            landlock: landlock_plan,
            seccomp: fprog.as_ref(),
            exe: &argv_c[0],
            argv: argv_p.as_ptr(),
            envp: env_p.as_ptr(),
            dry_run,
            subreaper: !ns,
        };
        let flags = match self.mode {
            Mode::Namespaces { userns } => {
                let mut f = libc::CLONE_NEWPID
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWCGROUP;
                if userns {
                    f |= libc::CLONE_NEWUSER;
                }
                f as libc::c_ulong
            }
            Mode::Plain => 0,
        };

        let start = Instant::now();
        // SAFETY: a fork-like clone; the child only runs `init_main`, which is written to be
        // async-signal-safe and never returns.
        let pid = unsafe { child::raw_fork(flags) };
        if pid == 0 {
            unsafe { child::init_main(&ctx) }
        }
        if pid < 0 {
            return Err(SandboxError::Io {
                context: "clone".into(),
                source: io::Error::last_os_error(),
            });
        }
        let mut init = InitGuard { pid, reaped: false };
        drop((stdin, out_w, err_w, res_w, rep_w, sync_r, join));

        if self.mode == (Mode::Namespaces { userns: true }) {
            self.write_id_maps(pid)
                .map_err(io_err("writing the user namespace id maps"))?;
        }
        // Two releases: after the id maps (init then builds the root), and after moving init
        // into its cgroups (init then forks the sample).
        write_byte(&sync_w).map_err(io_err("releasing the sample"))?;
        if let Some(cg) = &cg {
            cg.attach_v2(pid)
                .map_err(io_err("moving the sample into its cgroup"))?;
        }
        if !dry_run {
            // (EPIPE if init already failed; its report says why.)
            let _ = write_byte(&sync_w);
        }
        drop(sync_w);

        // Monitor: capture output, enforce the wall clock, wait for init's report to close.
        let cap = self.limits.output_bytes;
        let mut out = Capture::new(out_r, cap);
        let mut err = Capture::new(err_r, cap);
        let mut res = Capture::new(res_r, cap);
        let mut rep = Reports::new(rep_r);
        let deadline = start + self.limits.wall;
        let mut scratch = vec![0u8; 64 * 1024];
        let mut verdict: Option<Status> = None;
        while !rep.eof {
            let now = Instant::now();
            if now >= deadline {
                verdict = Some(Status::TimedOut);
                break;
            }
            let wait_ms = ((deadline - now).as_micros() / 1000 + 1).min(i32::MAX as u128) as i32;
            let mut pfds = [out.pollfd(), err.pollfd(), res.pollfd(), rep.pollfd()];
            // SAFETY: valid array of pollfd.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait_ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SandboxError::Io {
                    context: "poll".into(),
                    source: e,
                });
            }
            if pfds[0].revents != 0 {
                out.read_available(&mut scratch);
            }
            if pfds[1].revents != 0 {
                err.read_available(&mut scratch);
            }
            if pfds[2].revents != 0 {
                res.read_available(&mut scratch);
            }
            if out.overflow || err.overflow || res.overflow {
                verdict = Some(Status::OutputLimit);
                break;
            }
            if pfds[3].revents != 0 {
                rep.read_available();
            }
        }
        let mut wall = start.elapsed();

        if verdict.is_some() {
            match self.mode {
                Mode::Namespaces { .. } => init.kill(),
                Mode::Plain => {
                    // init (a subreaper) kills the rest once the sample's group is gone.
                    if let Some(g) = rep.started {
                        // SAFETY: kill(2) on the sample's process group and pid.
                        unsafe {
                            libc::kill(-g, libc::SIGKILL);
                            libc::kill(g, libc::SIGKILL);
                        }
                        let until = Instant::now() + Duration::from_secs(2);
                        while !rep.eof && Instant::now() < until {
                            rep.wait_readable(20);
                            rep.read_available();
                        }
                    }
                    init.kill();
                }
            }
        }
        let init_status = init.wait().map_err(io_err("waitpid"))?;
        if verdict.is_none() {
            wall = start.elapsed();
        }
        // Everything in the namespace is gone now; collect what is left in the pipes.
        for c in [&mut out, &mut err, &mut res] {
            c.read_available(&mut scratch);
        }
        rep.read_available();
        let oom = cg.as_ref().is_some_and(|c| c.oom_killed());
        if let Some(c) = cg.as_mut() {
            match c.teardown() {
                Ok(true) if ns => warn_once(&format!(
                    "sandbox: processes of sample {name} outlived its PID namespace and were killed through its cgroup"
                )),
                Ok(_) => {}
                Err(e) => warn_once(&format!(
                    "sandbox: could not remove the cgroup of sample {name}: {e}"
                )),
            }
        }
        drop(plain_dir);

        if let Some(r) = rep.error {
            return Err(self.setup_error(&r, exe));
        }
        if dry_run {
            return if rep.ready {
                Ok(RunResult {
                    outcome: Outcome {
                        status: Status::Exited(0),
                        stdout: vec![],
                        stderr: vec![],
                        result: vec![],
                        wall,
                    },
                    warnings: rep.warnings,
                })
            } else {
                Err(SandboxError::Internal(format!(
                    "sandbox init exited without finishing setup ({})",
                    describe_wait(init_status)
                )))
            };
        }
        let status = match verdict {
            Some(v) => v,
            None if out.overflow || err.overflow || res.overflow => Status::OutputLimit,
            None => match rep.status {
                Some(r) => {
                    let st = r.a;
                    let cpu_us = r.b + r.c;
                    if libc::WIFEXITED(st) {
                        Status::Exited(libc::WEXITSTATUS(st))
                    } else if libc::WIFSIGNALED(st) {
                        let sig = libc::WTERMSIG(st);
                        if sig == libc::SIGXCPU
                            || (sig == libc::SIGKILL && cpu_us >= self.cpu_limit_us)
                        {
                            Status::TimedOut
                        } else if sig == libc::SIGKILL && oom {
                            Status::OutOfMemory
                        } else {
                            Status::Signaled(sig)
                        }
                    } else {
                        return Err(SandboxError::Internal(format!(
                            "unexpected wait status {st:#x}"
                        )));
                    }
                }
                // Init itself died (the OOM killer may pick it too).
                None if oom => Status::OutOfMemory,
                None => {
                    return Err(SandboxError::Internal(format!(
                        "sandbox init ended without reporting the sample's status ({})",
                        describe_wait(init_status)
                    )));
                }
            },
        };
        Ok(RunResult {
            outcome: Outcome {
                status,
                stdout: out.buf,
                stderr: err.buf,
                result: res.buf,
                wall,
            },
            warnings: rep.warnings,
        })
    }

    fn setup_error(&self, r: &Record, exe: &str) -> SandboxError {
        let step = child::step_name(r.a);
        let op = r.c as usize;
        let what = match r.a {
            child::S_MKDIR
            | child::S_SYMLINK
            | child::S_TOUCH
            | child::S_BIND
            | child::S_BIND_RO
            | child::S_WRITE_ETC => self
                .mounts
                .as_ref()
                .and_then(|m| m.ops.get(op))
                .map(describe_op)
                .unwrap_or_default(),
            child::S_RLIMIT => self
                .rlimits
                .get(op)
                .map(|(res, l)| format!(" (resource {res} = {})", l.rlim_cur))
                .unwrap_or_default(),
            child::S_EXEC => format!(" {exe}"),
            child::S_JOB_FILES => format!(" (file #{op})"),
            _ => String::new(),
        };
        SandboxError::Setup {
            step,
            what,
            source: io::Error::from_raw_os_error(r.b as i32),
        }
    }
}

fn describe_op(op: &MountOp) -> String {
    let s = |c: &CString| c.to_string_lossy().into_owned();
    match op {
        MountOp::Mkdir(p) => format!(" (mkdir {})", s(p)),
        MountOp::Symlink { target, link } => format!(" ({} -> {})", s(link), s(target)),
        MountOp::Touch(p) => format!(" (create {})", s(p)),
        MountOp::BindRo { src, dst } | MountOp::BindDev { src, dst } => {
            format!(" ({} on {})", s(src), s(dst))
        }
        MountOp::Write { path, .. } => format!(" ({})", s(path)),
    }
}

fn describe_wait(st: i32) -> String {
    if libc::WIFEXITED(st) {
        format!("exit code {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("signal {}", libc::WTERMSIG(st))
    } else {
        format!("status {st:#x}")
    }
}

fn warn_once(msg: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("{msg}");
    }
}

fn validate_limits(l: &Limits) -> Result<(), SandboxError> {
    let bad = |what: &str| {
        Err(SandboxError::InvalidJob(format!(
            "limit {what} must be positive"
        )))
    };
    if l.wall.is_zero() {
        return bad("wall");
    }
    if l.cpu.is_zero() {
        return bad("cpu");
    }
    if l.memory_bytes == 0 || l.max_procs == 0 || l.open_files < 8 || l.tmpfs_bytes == 0 {
        return bad("memory_bytes/max_procs/open_files/tmpfs_bytes");
    }
    Ok(())
}

/// Checks job file names: relative, no `..`/`.`, no empty components. Returns the normalized
/// names and the directories to create first (parents before children).
fn validate_files(files: &[(String, Vec<u8>)]) -> Result<(Vec<String>, Vec<String>), SandboxError> {
    let mut names = Vec::with_capacity(files.len());
    let mut dirs: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (name, _) in files {
        let parts: Vec<&str> = name.split('/').collect();
        if name.is_empty()
            || name.starts_with('/')
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(SandboxError::InvalidJob(format!(
                "bad file name `{name}` (must be a plain relative path)"
            )));
        }
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if seen.insert(d.clone()) {
                dirs.push(d);
            }
        }
        names.push(name.clone());
    }
    Ok((names, dirs))
}

fn world_reachable(p: &Path) -> bool {
    let mut cur = PathBuf::new();
    for c in p.components() {
        cur.push(c);
        let Ok(m) = fs::metadata(&cur) else {
            return false;
        };
        let mode = m.permissions().mode();
        let need = if m.is_dir() { 0o001 } else { 0o005 };
        if mode & need != need {
            return false;
        }
    }
    true
}

/// The filesystem view of the namespace sandbox, computed once.
fn build_mount_plan(
    extra: &[PathBuf],
    limits: &Limits,
) -> Result<(MountPlan, Vec<PathBuf>), SandboxError> {
    enum Rel {
        Mkdir(PathBuf),
        Symlink(PathBuf, PathBuf),
        Touch(PathBuf),
        BindRo(PathBuf),
        BindDev(PathBuf),
        Write(PathBuf, Vec<u8>),
    }
    let mut ops: Vec<Rel> = Vec::new();
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut sources: Vec<PathBuf> = Vec::new();
    let mut visible: Vec<PathBuf> = Vec::new();
    fn mkdir_p(p: &Path, ops: &mut Vec<Rel>, made: &mut HashSet<PathBuf>) {
        let mut cur = PathBuf::from("/");
        for c in p.components().skip(1) {
            cur.push(c);
            if made.insert(cur.clone()) {
                ops.push(Rel::Mkdir(cur.clone()));
            }
        }
    }
    for d in SYSTEM_DIRS {
        let p = PathBuf::from(d);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.file_type().is_symlink() {
            let target = fs::read_link(&p).map_err(io_err(format!("readlink {d}")))?;
            made.insert(p.clone());
            ops.push(Rel::Symlink(target, p.clone()));
            visible.push(p);
        } else if m.is_dir() {
            mkdir_p(&p, &mut ops, &mut made);
            ops.push(Rel::BindRo(p.clone()));
            sources.push(p.clone());
            visible.push(p);
        }
    }
    for p in extra {
        if visible.iter().any(|v| p.starts_with(v)) {
            continue;
        }
        let Ok(m) = fs::metadata(p) else { continue };
        if m.is_dir() {
            mkdir_p(p, &mut ops, &mut made);
        } else {
            if let Some(parent) = p.parent() {
                mkdir_p(parent, &mut ops, &mut made);
            }
            ops.push(Rel::Touch(p.clone()));
        }
        ops.push(Rel::BindRo(p.clone()));
        sources.push(p.clone());
        visible.push(p.clone());
    }
    mkdir_p(Path::new("/etc"), &mut ops, &mut made);
    for name in ETC_ENTRIES {
        let p = Path::new("/etc").join(name);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.file_type().is_symlink() {
            if let Ok(t) = fs::read_link(&p) {
                ops.push(Rel::Symlink(t, p));
            }
        } else if m.is_file() && m.len() <= MIB {
            if let Ok(data) = fs::read(&p) {
                ops.push(Rel::Write(p, data));
            }
        } else if m.is_dir() {
            ops.push(Rel::Mkdir(p.clone()));
            ops.push(Rel::BindRo(p.clone()));
            sources.push(p);
        }
    }
    let generated: [(&str, String); 4] = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:{SANDBOX_UID}:{SANDBOX_GID}:nobody:{WORK_DIR}:/usr/sbin/nologin\n"
            ),
        ),
        ("group", format!("root:x:0:\nnogroup:x:{SANDBOX_GID}:\n")),
        (
            "hosts",
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n".into(),
        ),
        ("hostname", format!("{HOSTNAME}\n")),
    ];
    for (name, text) in generated {
        ops.push(Rel::Write(Path::new("/etc").join(name), text.into_bytes()));
    }
    mkdir_p(Path::new("/dev"), &mut ops, &mut made);
    for n in DEV_NODES {
        let p = Path::new("/dev").join(n);
        if p.exists() {
            ops.push(Rel::Touch(p.clone()));
            ops.push(Rel::BindDev(p.clone()));
            sources.push(p);
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("shm", WORK_DIR),
    ] {
        ops.push(Rel::Symlink(
            PathBuf::from(target),
            Path::new("/dev").join(link),
        ));
    }
    mkdir_p(Path::new("/proc"), &mut ops, &mut made);
    mkdir_p(Path::new(WORK_DIR), &mut ops, &mut made);

    let stage = STAGE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|c| c.is_dir() && !sources.iter().any(|s| s.starts_with(c)))
        .ok_or_else(|| {
            SandboxError::Unavailable("no directory to build the sandbox root on".into())
        })?;
    let staged = |p: &Path| -> Result<CString, SandboxError> {
        let rel = p.strip_prefix("/").unwrap_or(p);
        let full = stage.join(rel);
        CString::new(full.as_os_str().as_encoded_bytes()).map_err(|_| {
            SandboxError::InvalidJob(format!("path {} contains a NUL byte", p.display()))
        })
    };
    let plain = |p: &Path| -> Result<CString, SandboxError> {
        CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
            SandboxError::InvalidJob(format!("path {} contains a NUL byte", p.display()))
        })
    };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(match op {
            Rel::Mkdir(p) => MountOp::Mkdir(staged(&p)?),
            Rel::Symlink(t, l) => MountOp::Symlink {
                target: plain(&t)?,
                link: staged(&l)?,
            },
            Rel::Touch(p) => MountOp::Touch(staged(&p)?),
            Rel::BindRo(p) => MountOp::BindRo {
                src: plain(&p)?,
                dst: staged(&p)?,
            },
            Rel::BindDev(p) => MountOp::BindDev {
                src: plain(&p)?,
                dst: staged(&p)?,
            },
            Rel::Write(p, d) => MountOp::Write {
                path: staged(&p)?,
                data: d,
            },
        });
    }
    let plan = MountPlan {
        stage: plain(&stage)?,
        stage_opts: CString::new("size=16m,nr_inodes=16384,mode=0755").unwrap_or_default(),
        proc_dir: staged(Path::new("/proc"))?,
        ops: out,
        work_opts: CString::new(format!(
            "size={},nr_inodes=16384,mode=0700,uid={SANDBOX_UID},gid={SANDBOX_GID}",
            limits.tmpfs_bytes
        ))
        .unwrap_or_default(),
        hostname: CString::new(HOSTNAME).unwrap_or_default(),
    };
    Ok((plan, visible))
}

/// Owns the init process until it has been reaped; kills it if dropped early.
struct InitGuard {
    pid: libc::pid_t,
    reaped: bool,
}

impl InitGuard {
    fn kill(&self) {
        if !self.reaped {
            // SAFETY: our own unreaped child, so the pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
    fn wait(&mut self) -> io::Result<i32> {
        let mut st = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(st);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                self.reaped = true;
                return Err(e);
            }
        }
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.wait();
        }
    }
}

struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    overflow: bool,
}

impl Capture {
    fn new(fd: OwnedFd, cap: usize) -> Capture {
        Capture {
            fd: Some(fd),
            buf: Vec::new(),
            cap,
            overflow: false,
        }
    }
    fn pollfd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }
    }
    /// Reads until the pipe is empty, closed, or over the cap.
    fn read_available(&mut self, scratch: &mut [u8]) {
        while let Some(fd) = &self.fd {
            if self.overflow {
                return;
            }
            // SAFETY: reading into a valid buffer.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    scratch.as_mut_ptr() as *mut libc::c_void,
                    scratch.len(),
                )
            };
            if n > 0 {
                let n = n as usize;
                let room = self.cap - self.buf.len();
                self.buf.extend_from_slice(&scratch[..n.min(room)]);
                if n > room {
                    self.overflow = true;
                }
            } else if n == 0 {
                self.fd = None;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.fd = None;
                }
                return;
            }
        }
    }
}

struct Reports {
    fd: Option<OwnedFd>,
    pending: Vec<u8>,
    eof: bool,
    error: Option<Record>,
    status: Option<Record>,
    started: Option<libc::pid_t>,
    ready: bool,
    warnings: Vec<(i32, i32)>,
}

impl Reports {
    fn new(fd: OwnedFd) -> Reports {
        Reports {
            fd: Some(fd),
            pending: Vec::new(),
            eof: false,
            error: None,
            status: None,
            started: None,
            ready: false,
            warnings: Vec::new(),
        }
    }
    fn pollfd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }
    }
    fn wait_readable(&self, ms: i32) {
        let mut p = [self.pollfd()];
        // SAFETY: valid pollfd array.
        unsafe { libc::poll(p.as_mut_ptr(), 1, ms) };
    }
    fn read_available(&mut self) {
        let mut buf = [0u8; 4096];
        while let Some(fd) = &self.fd {
            // SAFETY: reading into a valid buffer.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n > 0 {
                self.pending.extend_from_slice(&buf[..n as usize]);
            } else if n == 0 {
                self.fd = None;
                self.eof = true;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.fd = None;
                    self.eof = true;
                }
                break;
            }
        }
        while self.pending.len() >= child::RECORD_SIZE {
            let bytes: Vec<u8> = self.pending.drain(..child::RECORD_SIZE).collect();
            // SAFETY: Record is plain old data of exactly RECORD_SIZE bytes.
            let r: Record = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Record) };
            match r.kind {
                child::KIND_ERROR => {
                    self.error.get_or_insert(r);
                }
                child::KIND_STATUS => self.status = Some(r),
                child::KIND_STARTED => self.started = Some(r.a),
                child::KIND_WARN => self.warnings.push((r.a, r.b as i32)),
                child::KIND_READY => self.ready = true,
                _ => {}
            }
        }
    }
}

/// The private host work dir of `rlimits` mode.
struct PlainDir {
    path: PathBuf,
}

impl PlainDir {
    fn create(
        path: &Path,
        owner: Option<(u32, u32)>,
        dirs: &[String],
        files: &[(String, Vec<u8>)],
    ) -> Result<PlainDir, SandboxError> {
        let _ = fs::remove_dir_all(path);
        fs::create_dir(path).map_err(io_err(format!("creating {}", path.display())))?;
        let d = PlainDir {
            path: path.to_path_buf(),
        };
        let chown = |p: &Path| -> Result<(), SandboxError> {
            if let Some((u, g)) = owner {
                std::os::unix::fs::chown(p, Some(u), Some(g))
                    .map_err(io_err(format!("chown {}", p.display())))?;
            }
            Ok(())
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod work dir"))?;
        chown(path)?;
        for dir in dirs {
            let p = path.join(dir);
            fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
            chown(&p)?;
        }
        for (name, data) in files {
            let p = path.join(name);
            fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
            chown(&p)?;
        }
        Ok(d)
    }
}

impl Drop for PlainDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.path).is_err() {
            // The sample may have removed permissions on its own files.
            fn fix(p: &Path) {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                if let Ok(rd) = fs::read_dir(p) {
                    for e in rd.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            fix(&e.path());
                        }
                    }
                }
            }
            fix(&self.path);
            if let Err(e) = fs::remove_dir_all(&self.path) {
                warn_once(&format!(
                    "sandbox: could not remove {}: {e}",
                    self.path.display()
                ));
            }
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: freshly created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One byte on the sync socket; MSG_NOSIGNAL, so a dead init yields EPIPE, never SIGPIPE.
fn write_byte(fd: &OwnedFd) -> io::Result<()> {
    loop {
        // SAFETY: sending one byte from a valid buffer.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                b"g".as_ptr() as *const libc::c_void,
                1,
                libc::MSG_NOSIGNAL,
            )
        };
        if n == 1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds that we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: freshly created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// stdin as a sealed, read-to-EOF memory file: nothing to feed, no SIGPIPE, no blocking.
fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; the fd is ours.
    let fd = unsafe {
        libc::memfd_create(
            c"anvil-stdin".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: writing from a valid slice.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                rest.as_ptr() as *const libc::c_void,
                rest.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        rest = &rest[n as usize..];
    }
    // SAFETY: plain fcntl/lseek on our fd.
    unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
        );
        if libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
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

    #[test]
    fn file_names_are_validated() {
        let ok = vec![
            ("a.py".to_string(), vec![]),
            ("pkg/b.py".to_string(), vec![]),
        ];
        let (names, dirs) = validate_files(&ok).unwrap();
        assert_eq!(names, ["a.py", "pkg/b.py"]);
        assert_eq!(dirs, ["pkg"]);
        for bad in ["/etc/x", "../x", "a//b", "a/./b", ""] {
            assert!(
                validate_files(&[(bad.to_string(), vec![])]).is_err(),
                "{bad}"
            );
        }
    }
}
