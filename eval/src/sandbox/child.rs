//! Code that runs between `clone` and `execve`, in a child of a multi-threaded process.
//!
//! Rules for everything in this file that runs in the child: no allocation, no locks, no panics
//! (no indexing that could fail, no `unwrap`), only raw syscalls / async-signal-safe libc calls.
//! In particular never glibc's set*id/setgroups wrappers (they signal and wait for the threads
//! glibc believes exist: a deadlock here) and never glibc's fork (atfork handlers, malloc locks).
//! Every input is prepared by the parent before the clone (C strings, pointer arrays, the BPF
//! program, the Landlock plan) and reached through [`ChildCtx`].
//!
//! Process layout: the evaluator clones an *init* process (PID 1 of fresh PID/mount/net/IPC/UTS
//! (and user) namespaces, or a plain subreaper child without namespaces). Init builds the
//! filesystem view, forks the *sample* process, which drops privileges, applies rlimits,
//! Landlock and seccomp and execs the program. Init reaps everything and, when the sample exits,
//! sends its wait status and CPU usage to the evaluator over the report pipe and exits, which
//! tears down the PID namespace (or, without one, kills the remaining descendants first).

use std::ffi::{CStr, CString};

use libc::{c_char, c_int, c_void};

use super::landlock;

/// Fixed child fd numbers.
pub(crate) const FD_REPORT: c_int = 4;
const FD_SYNC: c_int = 5;
const FD_CGROUP_FIRST: c_int = 6;
const FD_CGROUP_LAST: c_int = 7;

/// One message on the report pipe (32 bytes, written atomically).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Record {
    pub kind: u32,
    pub a: i32,
    pub b: i64,
    pub c: i64,
    pub d: i64,
}
pub(crate) const RECORD_SIZE: usize = std::mem::size_of::<Record>();
pub(crate) const KIND_ERROR: u32 = 1; // a = step, b = errno, c = op index
pub(crate) const KIND_STATUS: u32 = 2; // a = wait status, b = utime µs, c = stime µs
pub(crate) const KIND_STARTED: u32 = 3; // a = sample pid (as seen by init)
pub(crate) const KIND_WARN: u32 = 4; // a = step, b = errno
pub(crate) const KIND_READY: u32 = 5; // dry run finished

macro_rules! steps {
    ($($name:ident = $n:expr, $text:expr;)*) => {
        $(#[allow(dead_code)] pub(crate) const $name: i32 = $n;)*
        pub(crate) fn step_name(s: i32) -> &'static str {
            match s { $($n => $text,)* _ => "unknown step" }
        }
    };
}
steps! {
    S_SYNC = 1, "waiting for the evaluator";
    S_MOUNT_PRIVATE = 2, "making mounts private";
    S_STAGE = 3, "mounting the new root tmpfs";
    S_MKDIR = 4, "creating a directory in the new root";
    S_SYMLINK = 5, "creating a symlink in the new root";
    S_TOUCH = 6, "creating a mount point file";
    S_BIND = 7, "bind-mounting a host path";
    S_BIND_RO = 8, "making a bind mount read-only";
    S_WRITE_ETC = 9, "writing a file in the new root";
    S_PIVOT = 10, "pivot_root into the new root";
    S_PROC = 11, "mounting /proc";
    S_WORKDIR = 12, "mounting the work dir tmpfs";
    S_JOB_FILES = 13, "writing the job's files";
    S_ROOT_RO = 14, "making the new root read-only";
    S_HOSTNAME = 15, "setting the hostname";
    S_FORK = 16, "forking the sample process";
    S_SETSID = 17, "setsid";
    S_RLIMIT = 18, "setting rlimits";
    S_SETGROUPS = 19, "dropping supplementary groups";
    S_SETGID = 20, "setting the gid";
    S_SETUID = 21, "setting the uid";
    S_CHDIR = 22, "entering the work dir";
    S_NO_NEW_PRIVS = 23, "PR_SET_NO_NEW_PRIVS";
    S_LANDLOCK = 24, "applying the Landlock ruleset";
    S_SECCOMP = 25, "installing the seccomp filter";
    S_EXEC = 26, "executing the program";
    S_SUBREAPER = 27, "becoming a subreaper";
    S_CGROUP = 28, "joining the sample's cgroup";
    // Reported only by the fork server (zygote.py).
    S_UNSHARE = 29, "cloning into the run's namespaces";
    S_ID_MAPS = 30, "writing the run's uid/gid maps";
}

pub(crate) enum MountOp {
    Mkdir(CString),
    Symlink { target: CString, link: CString },
    Touch(CString),
    BindRo { src: CString, dst: CString },
    BindDev { src: CString, dst: CString },
    Write { path: CString, data: Vec<u8> },
}

/// The filesystem view, built once per sandbox. Paths in `ops` are prefixed with `stage`.
pub(crate) struct MountPlan {
    pub stage: CString,
    pub stage_opts: CString,
    /// `<stage>/proc`
    pub proc_dir: CString,
    pub ops: Vec<MountOp>,
    pub work_opts: CString,
    pub hostname: CString,
}

/// Everything the child needs, prepared by the parent.
pub(crate) struct ChildCtx<'a> {
    /// Parent-side fd numbers that become the child's 0..=5:
    /// stdin, stdout, stderr, result channel, report pipe, sync pipe.
    pub fds: [c_int; 6],
    /// v1 cgroup `tasks` files (or -1) that init writes "0" to; they become fds 6 and 7.
    pub cgroup_join: [c_int; 2],
    pub mounts: Option<&'a MountPlan>,
    /// Job files (path relative to the work dir, contents) and directories to create first;
    /// written by init in namespace mode (the parent writes them itself otherwise).
    pub files: &'a [(CString, &'a [u8])],
    pub dirs: &'a [CString],
    pub workdir: &'a CStr,
    pub rlimits: &'a [(c_int, libc::rlimit)],
    pub drop_to: Option<(libc::uid_t, libc::gid_t)>,
    /// In an unprivileged user namespace setgroups is denied; that is expected.
    pub setgroups_may_fail: bool,
    pub landlock: Option<&'a landlock::Plan>,
    pub seccomp: Option<&'a libc::sock_fprog>,
    pub exe: &'a CStr,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    pub dry_run: bool,
    /// No PID namespace: init is a subreaper and kills leftover descendants itself.
    pub subreaper: bool,
    /// The program is a fork server (`zygote.rs`): instead of restricting itself with Landlock
    /// (which would forbid the mounts its samples need), it gets the ruleset as fd
    /// [`FD_SERVER_LANDLOCK`] for each sample to apply; fd 3 is its control socket.
    pub server: bool,
}

/// Where a fork server finds the Landlock ruleset its samples restrict themselves with.
pub(crate) const FD_SERVER_LANDLOCK: c_int = 5;

#[inline]
fn errno() -> i32 {
    // SAFETY: errno is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

unsafe fn send(rec: &Record) {
    unsafe {
        libc::write(
            FD_REPORT,
            rec as *const Record as *const c_void,
            RECORD_SIZE,
        );
    }
}

unsafe fn fail(step: i32, err: i32, op: usize) -> ! {
    unsafe {
        send(&Record {
            kind: KIND_ERROR,
            a: step,
            b: err as i64,
            c: op as i64,
            d: 0,
        });
        libc::_exit(121)
    }
}

unsafe fn warn(step: i32, err: i32) {
    unsafe {
        send(&Record {
            kind: KIND_WARN,
            a: step,
            b: err as i64,
            c: 0,
            d: 0,
        })
    }
}

/// `fork()` without glibc's atfork machinery (whose locks may be held by threads that do not
/// exist in this copy of the process).
pub(crate) unsafe fn raw_fork(flags: libc::c_ulong) -> libc::pid_t {
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t
    }
}

unsafe fn close_from(first: c_int) {
    unsafe {
        if libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) != 0 {
            for fd in first..4096 {
                libc::close(fd);
            }
        }
    }
}

unsafe fn setup_fds(fds: &[c_int; 6], extra: &[c_int; 2]) {
    unsafe {
        let mut tmp = [-1 as c_int; 8];
        for (t, &f) in tmp.iter_mut().zip(fds.iter().chain(extra.iter())) {
            if f < 0 {
                continue;
            }
            *t = libc::fcntl(f, libc::F_DUPFD, 10);
            if *t < 0 {
                libc::_exit(122);
            }
        }
        for (target, &t) in tmp.iter().enumerate() {
            if t >= 0 && libc::dup2(t, target as c_int) < 0 {
                libc::_exit(122);
            }
        }
        close_from(FD_CGROUP_LAST + 1);
        libc::fcntl(FD_REPORT, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

unsafe fn reset_signals() {
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: u32 = 0x8000;

unsafe fn mount_setattr(path: *const c_char, recursive: bool, set: u64) -> i32 {
    unsafe {
        let attr = MountAttr {
            attr_set: set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path,
            if recursive { AT_RECURSIVE } else { 0 },
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if r == 0 {
            return 0;
        }
        let e = errno();
        if e != libc::ENOSYS {
            return e;
        }
        // Kernels before 5.12: per-mount remount (not recursive).
        let mut flags = libc::MS_REMOUNT | libc::MS_BIND;
        if set & MOUNT_ATTR_RDONLY != 0 {
            flags |= libc::MS_RDONLY;
        }
        if set & MOUNT_ATTR_NOSUID != 0 {
            flags |= libc::MS_NOSUID;
        }
        if set & MOUNT_ATTR_NODEV != 0 {
            flags |= libc::MS_NODEV;
        }
        if set & MOUNT_ATTR_NOEXEC != 0 {
            flags |= libc::MS_NOEXEC;
        }
        if libc::mount(
            std::ptr::null(),
            path,
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) == 0
        {
            0
        } else {
            errno()
        }
    }
}

unsafe fn write_all(fd: c_int, mut data: &[u8]) -> i32 {
    unsafe {
        while !data.is_empty() {
            let n = libc::write(fd, data.as_ptr() as *const c_void, data.len());
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return e;
            }
            data = data.get(n as usize..).unwrap_or(&[]);
        }
        0
    }
}

const NULL: *const c_char = std::ptr::null();

unsafe fn build_root(plan: &MountPlan, ctx: &ChildCtx) {
    unsafe {
        let c = |s: &'static [u8]| s.as_ptr() as *const c_char;
        if libc::mount(
            NULL,
            c(b"/\0"),
            NULL,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(S_MOUNT_PRIVATE, errno(), 0);
        }
        if libc::mount(
            c(b"tmpfs\0"),
            plan.stage.as_ptr(),
            c(b"tmpfs\0"),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.stage_opts.as_ptr() as *const c_void,
        ) != 0
        {
            fail(S_STAGE, errno(), 0);
        }
        for (i, op) in plan.ops.iter().enumerate() {
            match op {
                MountOp::Mkdir(p) => {
                    if libc::mkdir(p.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                        fail(S_MKDIR, errno(), i);
                    }
                }
                MountOp::Symlink { target, link } => {
                    if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                        fail(S_SYMLINK, errno(), i);
                    }
                }
                MountOp::Touch(p) => {
                    let fd = libc::open(
                        p.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        fail(S_TOUCH, errno(), i);
                    }
                    libc::close(fd);
                }
                MountOp::BindRo { src, dst } => {
                    if libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        NULL,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(S_BIND, errno(), i);
                    }
                    let e = mount_setattr(
                        dst.as_ptr(),
                        true,
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                    );
                    if e != 0 {
                        fail(S_BIND_RO, e, i);
                    }
                }
                MountOp::BindDev { src, dst } => {
                    if libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        NULL,
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(S_BIND, errno(), i);
                    }
                    let e =
                        mount_setattr(dst.as_ptr(), false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
                    if e != 0 {
                        fail(S_BIND_RO, e, i);
                    }
                }
                MountOp::Write { path, data } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        fail(S_WRITE_ETC, errno(), i);
                    }
                    let e = write_all(fd, data);
                    libc::close(fd);
                    if e != 0 {
                        fail(S_WRITE_ETC, e, i);
                    }
                }
            }
        }
        // A fresh /proc for the new PID namespace, mounted while the host's /proc is still
        // visible (in a user namespace the kernel requires one fully visible proc mount). It
        // can be refused (e.g. the host's /proc is partly masked); Python runs without it.
        if libc::mount(
            c(b"proc\0"),
            plan.proc_dir.as_ptr(),
            c(b"proc\0"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            warn(S_PROC, errno());
        }
        // Enter the new root; the old one is detached entirely.
        if libc::chdir(plan.stage.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c(b".\0"), c(b".\0")) != 0
        {
            fail(S_PIVOT, errno(), 0);
        }
        if libc::umount2(c(b".\0"), libc::MNT_DETACH) != 0 || libc::chdir(c(b"/\0")) != 0 {
            fail(S_PIVOT, errno(), 1);
        }
        if libc::mount(
            c(b"tmpfs\0"),
            ctx.workdir.as_ptr(),
            c(b"tmpfs\0"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            plan.work_opts.as_ptr() as *const c_void,
        ) != 0
        {
            fail(S_WORKDIR, errno(), 0);
        }
        if libc::chdir(ctx.workdir.as_ptr()) != 0 {
            fail(S_WORKDIR, errno(), 1);
        }
        write_job_files(ctx);
        let e = mount_setattr(
            c(b"/\0"),
            false,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        );
        if e != 0 {
            fail(S_ROOT_RO, e, 0);
        }
        let h = plan.hostname.as_bytes();
        if libc::sethostname(plan.hostname.as_ptr(), h.len()) != 0 {
            fail(S_HOSTNAME, errno(), 0);
        }
    }
}

/// Writes the job's files relative to the current directory (the work dir).
unsafe fn write_job_files(ctx: &ChildCtx) {
    unsafe {
        let (uid, gid) = match ctx.drop_to {
            Some((u, g)) => (u, g),
            None => (libc::uid_t::MAX, libc::gid_t::MAX), // -1: leave unchanged
        };
        for (i, d) in ctx.dirs.iter().enumerate() {
            if libc::mkdir(d.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                fail(S_JOB_FILES, errno(), i);
            }
            libc::chown(d.as_ptr(), uid, gid);
        }
        for (i, (name, data)) in ctx.files.iter().enumerate() {
            let fd = libc::open(
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            );
            if fd < 0 {
                fail(S_JOB_FILES, errno(), i);
            }
            let e = write_all(fd, data);
            libc::fchown(fd, uid, gid);
            libc::close(fd);
            if e != 0 {
                fail(S_JOB_FILES, e, i);
            }
        }
    }
}

/// Blocks until the evaluator writes one byte on the sync pipe; exits if it gave up on us.
unsafe fn wait_for_evaluator() {
    unsafe {
        let mut b = 0u8;
        loop {
            let r = libc::read(FD_SYNC, &mut b as *mut u8 as *mut c_void, 1);
            if r == 1 {
                return;
            }
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            libc::_exit(120);
        }
    }
}

/// Entry point of the cloned init process. Never returns.
pub(crate) unsafe fn init_main(ctx: &ChildCtx) -> ! {
    unsafe {
        setup_fds(&ctx.fds, &ctx.cgroup_join);
        // Wait until the evaluator has written our uid/gid maps.
        wait_for_evaluator();
        reset_signals();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);

        if let Some(plan) = ctx.mounts {
            build_root(plan, ctx);
        } else {
            if libc::setsid() < 0 {
                fail(S_SETSID, errno(), 0);
            }
            if ctx.subreaper && libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                fail(S_SUBREAPER, errno(), 0);
            }
        }
        if ctx.dry_run {
            send(&Record {
                kind: KIND_READY,
                ..Record::default()
            });
            libc::_exit(0);
        }
        // On cgroup v2 the evaluator moves us (which can take ~10 ms, an RCU grace period)
        // while we build the root; we wait for it only now, before the sample exists (it
        // inherits our cgroups). On v1 we join ourselves through the `tasks` files (fast).
        wait_for_evaluator();
        libc::close(FD_SYNC);
        for (i, fd) in (FD_CGROUP_FIRST..=FD_CGROUP_LAST).enumerate() {
            if ctx.cgroup_join.get(i).is_some_and(|&f| f >= 0) {
                if libc::write(fd, b"0".as_ptr() as *const c_void, 1) != 1 {
                    fail(S_CGROUP, errno(), i);
                }
                libc::close(fd);
            }
        }

        let pid = raw_fork(0);
        if pid == 0 {
            sample_main(ctx);
        }
        if pid < 0 {
            fail(S_FORK, errno(), 0);
        }
        send(&Record {
            kind: KIND_STARTED,
            a: pid,
            ..Record::default()
        });
        // Init keeps only the report pipe.
        for fd in 0..4 {
            libc::close(fd);
        }
        let mut status: c_int = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        loop {
            let r = libc::wait4(-1, &mut status, 0, &mut ru);
            if r == pid {
                let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
                send(&Record {
                    kind: KIND_STATUS,
                    a: status,
                    b: us(ru.ru_utime),
                    c: us(ru.ru_stime),
                    d: 0,
                });
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                break;
            }
        }
        if ctx.subreaper {
            kill_descendants(pid);
        }
        // In a PID namespace, init exiting makes the kernel kill everything else in it.
        libc::_exit(0)
    }
}

/// Without a PID namespace: kill the sample's process group and every process that was
/// reparented to us (we are a subreaper), until nothing is left.
unsafe fn kill_descendants(pgid: libc::pid_t) {
    unsafe {
        let path = b"/proc/thread-self/children\0";
        let mut buf = [0u8; 4096];
        for _round in 0..5000 {
            libc::kill(-pgid, libc::SIGKILL);
            let fd = libc::open(
                path.as_ptr() as *const c_char,
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                let mut cur: i64 = -1;
                loop {
                    let n = libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len());
                    if n <= 0 {
                        break;
                    }
                    for &ch in buf.iter().take(n as usize) {
                        if ch.is_ascii_digit() {
                            cur = if cur < 0 { 0 } else { cur } * 10 + (ch - b'0') as i64;
                        } else {
                            if cur > 0 {
                                libc::kill(cur as libc::pid_t, libc::SIGKILL);
                            }
                            cur = -1;
                        }
                    }
                }
                if cur > 0 {
                    libc::kill(cur as libc::pid_t, libc::SIGKILL);
                }
                libc::close(fd);
            }
            loop {
                let r = libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG);
                if r > 0 {
                    continue;
                }
                if r < 0 && errno() == libc::ECHILD {
                    return;
                }
                break;
            }
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The sample process: limits, identity, Landlock, seccomp, exec. Never returns.
unsafe fn sample_main(ctx: &ChildCtx) -> ! {
    unsafe {
        if libc::setsid() < 0 {
            fail(S_SETSID, errno(), 0);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        for (i, (res, lim)) in ctx.rlimits.iter().enumerate() {
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                *res,
                lim as *const libc::rlimit,
                std::ptr::null_mut::<libc::rlimit>(),
            ) != 0
            {
                fail(S_RLIMIT, errno(), i);
            }
        }
        if let Some((uid, gid)) = ctx.drop_to {
            // Raw syscalls: glibc's wrappers broadcast the change to every thread it believes
            // exists (taking locks that other threads of the evaluator may have held at clone
            // time), but this copy of the process has exactly one thread.
            if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
                && !ctx.setgroups_may_fail
            {
                fail(S_SETGROUPS, errno(), 0);
            }
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                fail(S_SETGID, errno(), 0);
            }
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
                fail(S_SETUID, errno(), 0);
            }
            // Drop every capability (in a user namespace we still hold them until exec).
            let hdr = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let data = [
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr());
        }
        if libc::chdir(ctx.workdir.as_ptr()) != 0 {
            fail(S_CHDIR, errno(), 0);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(S_NO_NEW_PRIVS, errno(), 0);
        }
        close_from(FD_REPORT + 1);
        if let Some(ll) = ctx.landlock {
            if ctx.server {
                let fd = ll.ruleset_fd();
                if fd < 0 {
                    fail(S_LANDLOCK, -fd, 0);
                }
                if fd != FD_SERVER_LANDLOCK {
                    if libc::dup2(fd, FD_SERVER_LANDLOCK) < 0 {
                        fail(S_LANDLOCK, errno(), 1);
                    }
                    libc::close(fd);
                }
                libc::fcntl(FD_SERVER_LANDLOCK, libc::F_SETFD, 0);
            } else {
                let e = ll.apply();
                if e != 0 {
                    fail(S_LANDLOCK, e, 0);
                }
            }
        }
        if let Some(prog) = ctx.seccomp
            && libc::syscall(
                libc::SYS_seccomp,
                1u32, /* SET_MODE_FILTER */
                0u32,
                prog as *const libc::sock_fprog,
            ) != 0
        {
            fail(S_SECCOMP, errno(), 0);
        }
        libc::execve(ctx.exe.as_ptr(), ctx.argv, ctx.envp);
        fail(S_EXEC, errno(), 0)
    }
}
