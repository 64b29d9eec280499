use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::mounts::{build_mount_plan, validate_limits, world_reachable};
use super::{
    DEV_NODES, HOSTNAME, Isolation, LayerReport, Limits, MIB, Mode, Options, SANDBOX_GID,
    SANDBOX_UID, SYSTEM_DIRS, Sandbox, SandboxError, WORK_DIR, cgroup, child, io_err, landlock,
    python_info, seccomp,
};

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
            server_bpf: None,
            server_rlimits: Vec::new(),
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
                fork_server: false,
            }));
            if ns {
                sb.server_bpf = Some(seccomp::build(&seccomp::FilterOptions {
                    unix_sockets_only: false,
                    deny_subreaper: false,
                    fork_server: true,
                }));
            }
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
        // The fork server lives across samples: no CPU limit of its own (each sample sets its
        // own after the fork), and room in RLIMIT_NPROC for itself and the per-sample init
        // beside a sample's own processes: its limit bounds the whole worker, while each
        // sample's (one more than `max_procs`, for its init, which shares its uid in the
        // per-sample user namespace) bounds that sample.
        self.server_rlimits = v
            .iter()
            .filter(|(r, _)| *r != libc::RLIMIT_CPU as i32)
            .map(|&(r, l)| {
                if r == libc::RLIMIT_NPROC as i32 {
                    (r, lim(l.rlim_cur as u64 + 8, l.rlim_max as u64 + 8))
                } else {
                    (r, l)
                }
            })
            .collect();
        self.rlimits = v;
    }

    /// Whether samples can execute `exe`: without a mount namespace they reach it through the
    /// host's directories as uid 65534, which may not search them (a pyenv under /root), and
    /// every run would fail to exec; better said once, before any run.
    pub fn check_executable(&self, exe: &Path) -> Result<(), SandboxError> {
        if self.mode == Mode::Plain && self.drop_to.is_some() && !world_reachable(exe) {
            return Err(SandboxError::Unavailable(format!(
                "without namespaces samples run as uid {SANDBOX_UID}, which cannot reach {} (a \
                 directory on the way is closed to other users); set ANVIL_PYTHON to a \
                 system-wide interpreter such as /usr/bin/python3",
                exe.display()
            )));
        }
        Ok(())
    }

    fn build_report(
        &self,
        ns_failures: &[String],
        proc_warning: Option<String>,
        cg: &(Result<(), String>, Result<(), String>),
        seccomp_state: &Result<(), String>,
        landlock_abi: &Result<i32, String>,
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
                let d = format!("uid {u} gid {g}, {groups}, no capabilities, no_new_privs");
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
}
