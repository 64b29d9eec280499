use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libc::c_char;

use super::child::{self, Record};
use super::fds::{pipe, sealed_memfd, set_nonblocking, socket_pair, write_byte};
use super::mounts::{PlainDir, describe_op, validate_files};
use super::{
    Job, Mode, Outcome, SANDBOX_GID, SANDBOX_UID, Sandbox, SandboxError, Status, WORK_DIR, cgroup,
    io_err, landlock, warn_once,
};

struct RunResult {
    outcome: Outcome,
    warnings: Vec<(i32, i32)>,
}

impl Sandbox {
    /// The memory and pids cgroup of one run, named `name`, beneath ours; `None` when this
    /// sandbox has neither controller.
    pub(crate) fn sample_cgroup(
        &self,
        name: &str,
    ) -> Result<Option<cgroup::RunCgroup>, SandboxError> {
        if self.cg_memory.is_none() && self.cg_pids.is_none() {
            return Ok(None);
        }
        cgroup::RunCgroup::create(
            self.cg_memory.as_ref(),
            self.cg_pids.as_ref(),
            self.memsw,
            name,
            self.limits.memory_bytes,
            self.limits.max_procs,
        )
        .map(Some)
        .map_err(io_err("creating the sample's cgroup"))
    }

    /// Runs one job to completion. Errors are harness failures, never verdicts.
    pub fn run(&self, job: &Job) -> Result<Outcome, SandboxError> {
        self.execute(job, false).map(|r| r.outcome)
    }

    pub(super) fn dry_run(&self) -> Result<Vec<(i32, i32)>, SandboxError> {
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
        let sp = self.spawn(job, dry_run, None)?;
        self.finish(sp, dry_run, &job.argv[0])
    }

    /// Starts `job` in a fresh sandbox and returns the running init with the evaluator's ends of
    /// its pipes. With `server`, the program is a fork server (`zygote.rs`): `server` becomes its
    /// fd 3 (instead of a result pipe), it gets the server's rlimits and seccomp filter and the
    /// Landlock ruleset as an fd, and no cgroup of its own (each of its samples gets one).
    pub(super) fn spawn(
        &self,
        job: &Job,
        dry_run: bool,
        server: Option<&OwnedFd>,
    ) -> Result<Spawned, SandboxError> {
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

        let name = run_name();

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

        let cg = if ns && !dry_run && server.is_none() {
            self.sample_cgroup(&name)?
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
        let bpf = if server.is_some() {
            self.server_bpf.as_ref()
        } else {
            self.bpf.as_ref()
        };
        let fprog = bpf.map(|b| libc::sock_fprog {
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
                server.map_or(res_w.as_raw_fd(), |c| c.as_raw_fd()),
                rep_w.as_raw_fd(),
                sync_r.as_raw_fd(),
            ],
            cgroup_join,
            mounts: if ns { self.mounts.as_ref() } else { None },
            files: &files_c,
            dirs: &dirs_c,
            workdir: &workdir_c,
            rlimits: if server.is_some() {
                &self.server_rlimits
            } else {
                &self.rlimits
            },
            drop_to: self.drop_to,
            setgroups_may_fail: !self.privileged,
            landlock: landlock_plan,
            seccomp: fprog.as_ref(),
            exe: &argv_c[0],
            argv: argv_p.as_ptr(),
            envp: env_p.as_ptr(),
            dry_run,
            subreaper: !ns,
            server: server.is_some(),
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
                err: io::Error::last_os_error(),
            });
        }
        let init = InitGuard { pid, reaped: false };
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
        Ok(Spawned {
            init,
            start,
            out_r,
            err_r,
            res_r,
            rep_r,
            cg,
            plain_dir,
            name,
        })
    }

    /// Monitors a spawned run to its end and decides its status.
    fn finish(&self, sp: Spawned, dry_run: bool, exe: &str) -> Result<RunResult, SandboxError> {
        let ns = self.mode != Mode::Plain;
        let Spawned {
            mut init,
            start,
            out_r,
            err_r,
            res_r,
            rep_r,
            mut cg,
            plain_dir,
            name,
        } = sp;
        let mut ch = Channels::new(out_r, err_r, res_r, rep_r, &self.limits);
        let verdict = ch.monitor(start + self.limits.wall)?;
        let mut wall = start.elapsed();

        if verdict.is_some() {
            match self.mode {
                Mode::Namespaces { .. } => init.kill(),
                Mode::Plain => {
                    // init (a subreaper) kills the rest once the sample's group is gone.
                    if let Some(g) = ch.rep.started {
                        // SAFETY: kill(2) on the sample's process group and pid.
                        unsafe {
                            libc::kill(-g, libc::SIGKILL);
                            libc::kill(g, libc::SIGKILL);
                        }
                        let until = Instant::now() + Duration::from_secs(2);
                        while !ch.rep.eof && Instant::now() < until {
                            ch.rep.wait_readable(20);
                            ch.rep.read_available();
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
        let oom = ch.finish(cg.as_mut(), &name, ns);
        drop(plain_dir);

        if let Some(r) = ch.rep.error {
            return Err(self.setup_error(&r, exe));
        }
        let warnings = std::mem::take(&mut ch.rep.warnings);
        if dry_run {
            return if ch.rep.ready {
                Ok(RunResult {
                    outcome: Outcome {
                        status: Status::Exited(0),
                        stdout: vec![],
                        stderr: vec![],
                        stdout_dropped: 0,
                        stderr_dropped: 0,
                        result: vec![],
                        wall,
                    },
                    warnings,
                })
            } else {
                Err(SandboxError::Internal(format!(
                    "sandbox init exited without finishing setup ({})",
                    describe_wait(init_status)
                )))
            };
        }
        let status = self.decide(verdict, &ch, oom, init_status)?;
        Ok(RunResult {
            outcome: ch.into_outcome(status, wall),
            warnings,
        })
    }

    /// The status of a finished run: a limit the monitor hit, or the sample's wait status as
    /// its init reported it (CPU limit and OOM told apart from other SIGKILLs).
    pub(super) fn decide(
        &self,
        verdict: Option<Status>,
        ch: &Channels,
        oom: bool,
        init_status: i32,
    ) -> Result<Status, SandboxError> {
        let Channels { out, err, res, rep } = ch;
        Ok(match verdict {
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
        })
    }

    pub(super) fn setup_error(&self, r: &Record, exe: &str) -> SandboxError {
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
            err: io::Error::from_raw_os_error(r.b as i32),
        }
    }
}

/// The evaluator's ends of a run's pipes: stdout, stderr and the result channel, captured up
/// to the output cap, and init's reports.
pub(super) struct Channels {
    pub out: Capture,
    pub err: Capture,
    pub res: Capture,
    pub rep: Reports,
}

impl Channels {
    pub(super) fn new(
        out: OwnedFd,
        err: OwnedFd,
        res: OwnedFd,
        rep: OwnedFd,
        limits: &super::Limits,
    ) -> Channels {
        let (cap, keep) = (limits.output_bytes, limits.kept_output_bytes);
        Channels {
            out: Capture::tail(out, cap, keep),
            err: Capture::tail(err, cap, keep),
            res: Capture::new(res, cap),
            rep: Reports::new(rep),
        }
    }

    /// Captures output, reads init's reports and enforces the wall clock until the report pipe
    /// closes (init is gone) or a limit is hit, which it returns.
    pub(super) fn monitor(&mut self, deadline: Instant) -> Result<Option<Status>, SandboxError> {
        let Channels { out, err, res, rep } = self;
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
                    err: e,
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
        Ok(verdict)
    }

    /// After a run: reads what is left in the pipes, then removes its cgroup (warning once about
    /// processes that outlived the PID namespace, when there was one). Whether the cgroup saw an
    /// out-of-memory kill.
    pub(super) fn finish(
        &mut self,
        cg: Option<&mut cgroup::RunCgroup>,
        name: &str,
        pid_namespace: bool,
    ) -> bool {
        let mut scratch = vec![0u8; 64 * 1024];
        for c in [&mut self.out, &mut self.err, &mut self.res] {
            c.read_available(&mut scratch);
        }
        self.rep.read_available();
        let Some(c) = cg else { return false };
        let oom = c.oom_killed();
        match c.teardown() {
            Ok(true) if pid_namespace => warn_once(&format!(
                "sandbox: processes of sample {name} outlived its PID namespace and were killed through its cgroup"
            )),
            Ok(_) => {}
            Err(e) => warn_once(&format!(
                "sandbox: could not remove the cgroup of sample {name}: {e}"
            )),
        }
        oom
    }

    /// The run's captured output with its status.
    pub(super) fn into_outcome(self, status: Status, wall: Duration) -> Outcome {
        let (stdout, stdout_dropped) = self.out.into_kept();
        let (stderr, stderr_dropped) = self.err.into_kept();
        Outcome {
            status,
            stdout,
            stderr,
            stdout_dropped,
            stderr_dropped,
            result: self.res.buf,
            wall,
        }
    }
}

/// A started sandbox: its init (a child of this thread) and the evaluator's ends of the pipes.
pub(super) struct Spawned {
    pub init: InitGuard,
    pub start: Instant,
    pub out_r: OwnedFd,
    pub err_r: OwnedFd,
    pub res_r: OwnedFd,
    pub rep_r: OwnedFd,
    pub cg: Option<cgroup::RunCgroup>,
    pub plain_dir: Option<PlainDir>,
    pub name: String,
}

/// Unique across all sandboxes of this process (names of cgroups and work dirs).
pub(super) fn run_name() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("anvil-sbx-{}-{n}", std::process::id())
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

/// Owns the init process until it has been reaped; kills it if dropped early.
pub(super) struct InitGuard {
    pub pid: libc::pid_t,
    reaped: bool,
}

impl InitGuard {
    pub(super) fn kill(&self) {
        if !self.reaped {
            // SAFETY: our own unreaped child, so the pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
    pub(super) fn wait(&mut self) -> io::Result<i32> {
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

pub(super) struct Capture {
    fd: Option<OwnedFd>,
    pub buf: Vec<u8>,
    /// Bytes allowed before `overflow`.
    cap: usize,
    /// Bytes kept: the last ones read.
    keep: usize,
    /// Bytes read, kept or not.
    read: usize,
    pub overflow: bool,
}

impl Capture {
    /// Keeps everything up to `cap`.
    pub(super) fn new(fd: OwnedFd, cap: usize) -> Capture {
        Capture::tail(fd, cap, cap)
    }
    /// Reads up to `cap`, keeping the last `keep` bytes.
    pub(super) fn tail(fd: OwnedFd, cap: usize, keep: usize) -> Capture {
        Capture {
            fd: Some(fd),
            buf: Vec::new(),
            cap,
            keep: keep.min(cap),
            read: 0,
            overflow: false,
        }
    }
    /// The kept bytes and how many before them were dropped.
    pub(super) fn into_kept(mut self) -> (Vec<u8>, usize) {
        if self.buf.len() > self.keep {
            self.buf.drain(..self.buf.len() - self.keep);
        }
        let dropped = self.read - self.buf.len();
        (self.buf, dropped)
    }
    fn pollfd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }
    }
    /// Reads until the pipe is empty, closed, or over the cap.
    pub(super) fn read_available(&mut self, scratch: &mut [u8]) {
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
                let room = self.cap - self.read;
                self.buf.extend_from_slice(&scratch[..n.min(room)]);
                self.read += n.min(room);
                // Trimmed in batches: the buffer stays under twice what is kept.
                if self.buf.len() >= 2 * self.keep.max(scratch.len()) {
                    self.buf.drain(..self.buf.len() - self.keep);
                }
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

pub(super) struct Reports {
    fd: Option<OwnedFd>,
    pending: Vec<u8>,
    pub eof: bool,
    pub error: Option<Record>,
    pub status: Option<Record>,
    pub started: Option<libc::pid_t>,
    ready: bool,
    warnings: Vec<(i32, i32)>,
}

impl Reports {
    pub(super) fn new(fd: OwnedFd) -> Reports {
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
    pub(super) fn read_available(&mut self) {
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
