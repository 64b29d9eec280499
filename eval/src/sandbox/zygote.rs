//! Fork servers: one pre-started, pre-imported interpreter per worker, inside a sandbox, that
//! forks one process tree per sample (see `eval/src/zygote.py` for the server's side and
//! docs/eval.md for the design).
//!
//! The server is started like any sample ([`Sandbox::spawn`]): fresh user, PID, mount, network,
//! IPC, UTS and cgroup namespaces, the minimal read-only root, uid 65534 with no capabilities,
//! `no_new_privs`, rlimits. It differs in three ways, all needed to build per-sample isolation:
//! its seccomp filter allows `mount` and `clone` into new namespaces; it holds the Landlock
//! ruleset as an fd instead of being restricted by it (Landlock forbids mounting); and it has no
//! CPU limit. It never runs sample code. Per sample, it clones the sample's init straight into a
//! nested user namespace plus new PID, mount, IPC, UTS and cgroup namespaces (the network
//! namespace is the server's own, empty, shared by its runs one after another and checked empty
//! of sockets after each); init mounts a fresh work-dir tmpfs and `/proc`, joins the sample's
//! memory/pids cgroups (created here, as for [`Sandbox::run`]), and forks the sample, which sets
//! the per-sample rlimits, drops every capability, applies Landlock and the full seccomp
//! deny-list, and only then runs the harness.
//!
//! The evaluator keeps what it decides outside: it creates the sample's pipes (stdin, stdout,
//! stderr, result, report), captures them with the same caps, enforces the wall clock, reads the
//! sample's wait status and CPU time from its init, and checks the cgroup for OOM kills. A run
//! that hits a limit ends by killing the whole server (its PID namespace takes every sample
//! process with it); the next sample starts a fresh one. When anything about the server goes
//! wrong (it dies, breaks the protocol, fails a setup step), that sample is run again the old
//! way, so a server problem can cost time but never a verdict.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cgroup::Version;
use super::fds::{pipe, sealed_memfd, set_nonblocking};
use super::run::{Capture, Channels, InitGuard, Reports, run_name};
use super::{
    Job, Mode, Outcome, SANDBOX_GID, SANDBOX_UID, Sandbox, SandboxError, WORK_DIR, io_err,
    warn_once,
};

/// How long a server may take to start (interpreter, imports) before the fork server is given up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to confirm that a finished sample's namespace is gone.
const DONE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of fork servers for one program (one server per concurrent caller).
pub struct ForkServer {
    argv: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    idle: Mutex<Vec<Server>>,
    /// Why the fork server is not used (then [`ForkServer::run`] returns `None`).
    disabled: Mutex<Option<String>>,
}

/// One running server: the sandbox's init (our child) and the control socket.
struct Server {
    init: InitGuard,
    ctl: OwnedFd,
    err_r: OwnedFd,
    rep_r: OwnedFd,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Killing the server's init ends its PID namespace: the server and anything of a sample.
        self.init.kill();
        let _ = self.init.wait();
    }
}

/// One sample for a fork server: files written into its fresh work dir before it runs.
pub struct ServerJob<'a> {
    pub files: &'a [(String, Vec<u8>)],
}

impl ForkServer {
    /// `argv` starts the server (its `argv[0]` the resolved interpreter); `files` are written into
    /// its work dir, beside `server.json` (the per-sample settings, written here).
    pub fn new(sb: &Sandbox, argv: Vec<String>, files: Vec<(String, Vec<u8>)>) -> ForkServer {
        let disabled = if sb.mode != (Mode::Namespaces { userns: true }) {
            Some("the fork server needs namespaces with a user namespace".to_string())
        } else if [&sb.cg_memory, &sb.cg_pids]
            .iter()
            .any(|c| c.as_ref().is_some_and(|b| b.version == Version::V2))
        {
            // A v2 cgroup is joined through cgroup.procs, whose permission check wants the
            // evaluator's credentials (it writes the host pid of each sample's init itself).
            Some("cgroup v2 (samples join their cgroup from the evaluator)".to_string())
        } else if std::env::var_os("ANVIL_EVAL_FORK_SERVER").is_some_and(|v| v == "0") {
            Some("turned off by ANVIL_EVAL_FORK_SERVER=0".to_string())
        } else {
            None
        };
        ForkServer {
            argv,
            files,
            idle: Mutex::new(Vec::new()),
            disabled: Mutex::new(disabled),
        }
    }

    /// Why samples take the per-sample path, if they do.
    pub fn disabled(&self) -> Option<String> {
        self.disabled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn disable(&self, why: String) {
        warn_once(&format!(
            "warning: sandbox: fork server off, every sample starts its own interpreter: {why}"
        ));
        *self.disabled.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Stops every idle server.
    pub fn shutdown(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs one sample on a server. `Ok(None)`: the fork server is off, or something about the
    /// server failed before a verdict: run the sample with [`Sandbox::run`] instead.
    pub fn run(&self, sb: &Sandbox, job: &ServerJob) -> Result<Option<Outcome>, SandboxError> {
        if self.disabled().is_some() {
            return Ok(None);
        }
        let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut server = match popped {
            Some(s) => s,
            None => match self.start(sb) {
                Ok(s) => s,
                Err(why) => {
                    self.disable(why);
                    return Ok(None);
                }
            },
        };
        match self.run_on(sb, &mut server, job)? {
            Ran::Done(outcome, reusable) => {
                if reusable {
                    self.idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(server);
                }
                Ok(Some(outcome))
            }
            Ran::ServerLost => Ok(None),
            Ran::SetupFailed(why) => {
                self.disable(why);
                Ok(None)
            }
        }
    }

    fn config(&self, sb: &Sandbox) -> Vec<u8> {
        let rlimits: Vec<[u64; 3]> = sb
            .rlimits
            .iter()
            .map(|(r, l)| {
                // The sample's init shares its uid in the per-sample user namespace (the Rust
                // init is root there): one more process, so the sample keeps `max_procs`.
                let extra = u64::from(*r == libc::RLIMIT_NPROC as i32);
                [
                    *r as u64,
                    (l.rlim_cur as u64).saturating_add(extra),
                    (l.rlim_max as u64).saturating_add(extra),
                ]
            })
            .collect();
        let bpf: String = sb.bpf.as_ref().map_or(String::new(), |p| {
            p.iter()
                .flat_map(|i| {
                    let mut b = [0u8; 8];
                    b[..2].copy_from_slice(&i.code.to_ne_bytes());
                    b[2] = i.jt;
                    b[3] = i.jf;
                    b[4..].copy_from_slice(&i.k.to_ne_bytes());
                    b
                })
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        let work_opts = sb
            .mounts
            .as_ref()
            .map(|m| m.work_opts.to_string_lossy().into_owned())
            .unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({
            "uid": SANDBOX_UID, "gid": SANDBOX_GID, "workdir": WORK_DIR, "work_opts": work_opts,
            "rlimits": rlimits, "bpf": bpf, "landlock": sb.landlock.is_some(),
        }))
        .expect("json")
    }

    fn start(&self, sb: &Sandbox) -> Result<Server, String> {
        let (ctl, theirs) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut files = self.files.clone();
        files.push(("server.json".into(), self.config(sb)));
        let job = Job {
            argv: &self.argv,
            files: &files,
            stdin: b"",
            env: &[],
        };
        let sp = sb
            .spawn(&job, false, Some(&theirs))
            .map_err(|e| e.to_string())?;
        drop(theirs);
        let mut server = Server {
            init: sp.init,
            ctl,
            err_r: sp.err_r,
            rep_r: sp.rep_r,
        };
        let mut buf = [0u8; 16];
        match recv_timeout(&server.ctl, &mut buf, START_TIMEOUT) {
            Ok(5) if &buf[..5] == b"ready" => Ok(server),
            got => {
                server.init.kill();
                let _ = server.init.wait();
                let mut err = Capture::new(dup(&server.err_r)?, 4096);
                err.read_available(&mut [0u8; 4096]);
                let mut rep = Reports::new(dup(&server.rep_r)?);
                rep.read_available();
                let why = match (rep.error, got) {
                    (Some(r), _) => sb.setup_error(&r, &self.argv[0]).to_string(),
                    (None, Err(e)) => format!("starting the server: {e}"),
                    (None, Ok(_)) => "the server did not start".to_string(),
                };
                let tail = String::from_utf8_lossy(&err.buf);
                Err(match tail.trim().lines().last() {
                    Some(l) => format!("{why} ({l})"),
                    None => why,
                })
            }
        }
    }

    fn run_on(
        &self,
        sb: &Sandbox,
        server: &mut Server,
        job: &ServerJob,
    ) -> Result<Ran, SandboxError> {
        let start = Instant::now();
        let name = run_name();
        let mut cg = sb.sample_cgroup(&name)?;
        let join = match &cg {
            Some(c) => c
                .v1_join_files()
                .map_err(io_err("opening the sample's cgroup"))?,
            None => Vec::new(),
        };
        let stdin = sealed_memfd(b"").map_err(io_err("creating the stdin memfd"))?;
        let files =
            sealed_memfd(&pack_files(job.files)).map_err(io_err("creating the job files memfd"))?;
        let (out_r, out_w) = pipe().map_err(io_err("pipe"))?;
        let (err_r, err_w) = pipe().map_err(io_err("pipe"))?;
        let (res_r, res_w) = pipe().map_err(io_err("pipe"))?;
        let (rep_r, rep_w) = pipe().map_err(io_err("pipe"))?;
        for fd in [&out_r, &err_r, &res_r, &rep_r] {
            set_nonblocking(fd).map_err(io_err("fcntl"))?;
        }
        let mut send: Vec<i32> = [&stdin, &out_w, &err_w, &res_w, &rep_w, &files]
            .iter()
            .map(|f| f.as_raw_fd())
            .collect();
        send.extend(join.iter().map(|f| f.as_raw_fd()));
        if send_fds(&server.ctl, b"R", &send).is_err() {
            return Ok(Ran::ServerLost);
        }
        drop((stdin, files, out_w, err_w, res_w, rep_w, join));

        let mut ch = Channels::new(out_r, err_r, res_r, rep_r, &sb.limits);
        let verdict = ch.monitor(start + sb.limits.wall)?;
        let wall = start.elapsed();
        // The sample's namespace is gone once the server says so ("D": it reaped the init, and
        // no socket is left in its network namespace); after a limit, or without that word, the
        // whole server goes.
        let mut reusable = verdict.is_none();
        if reusable {
            let mut b = [0u8; 4];
            reusable =
                matches!(recv_timeout(&server.ctl, &mut b, DONE_TIMEOUT), Ok(1) if b[0] == b'D');
        }
        if !reusable {
            server.init.kill();
            let _ = server.init.wait();
        }
        let oom = ch.finish(cg.as_mut(), &name, true);
        if let Some(r) = ch.rep.error {
            return Ok(Ran::SetupFailed(
                sb.setup_error(&r, "(fork server)").to_string(),
            ));
        }
        if verdict.is_none() && ch.rep.status.is_none() && !oom {
            return Ok(Ran::ServerLost);
        }
        let status = sb.decide(verdict, &ch, oom, 0)?;
        Ok(Ran::Done(ch.into_outcome(status, wall), reusable))
    }
}

enum Ran {
    /// A verdict; whether the server can take the next sample.
    Done(Outcome, bool),
    /// The server died or broke the protocol before a verdict.
    ServerLost,
    /// A per-sample setup step failed (this host cannot do it): stop using fork servers.
    SetupFailed(String),
}

/// `u32 name length, name, u64 data length, data` per file, read by zygote.py.
fn pack_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, data) in files {
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&(data.len() as u64).to_le_bytes());
        v.extend_from_slice(data);
    }
    v
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, String> {
    fd.try_clone().map_err(|e| format!("dup: {e}"))
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds that we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
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

/// One message with file descriptors attached (SCM_RIGHTS); MSG_NOSIGNAL: a dead server is EPIPE.
fn send_fds(sock: &OwnedFd, msg: &[u8], fds: &[i32]) -> io::Result<()> {
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and the
    // control buffer is CMSG_SPACE bytes, aligned for cmsghdr.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = space as _;
        let cm = libc::CMSG_FIRSTHDR(&mh);
        (*cm).cmsg_level = libc::SOL_SOCKET;
        (*cm).cmsg_type = libc::SCM_RIGHTS;
        (*cm).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cm), payload);
        loop {
            if libc::sendmsg(sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// One message, waiting at most `timeout`; `Ok(0)` is end of file.
fn recv_timeout(sock: &OwnedFd, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply"));
        }
        let mut p = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: valid pollfd array.
        let r = unsafe { libc::poll(p.as_mut_ptr(), 1, left.as_millis().max(1) as i32) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            continue;
        }
        // SAFETY: receiving into a valid buffer.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
        ) {
            return Err(e);
        }
    }
}
