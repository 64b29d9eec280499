//! The sandbox against real hostile programs. Every run also checks that nothing carrying the
//! run's marker survives it and, where relevant, that the host was not touched.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anvil_eval::sandbox::*;

/// Tight limits for runs that are meant to time out.
fn limits() -> Limits {
    Limits {
        wall: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// The default (strongest available) sandbox with a 2 s wall clock.
fn tight() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let sb = Sandbox::new(Isolation::Auto, limits()).expect("sandbox");
        eprint!("{}", sb.describe());
        sb
    })
}

/// The same with a generous wall clock, for runs that must finish even while other tests
/// (fork bombs, busy loops) load the two cores.
fn auto() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        Sandbox::new(
            Isolation::Auto,
            Limits {
                wall: Duration::from_secs(20),
                ..limits()
            },
        )
        .expect("sandbox")
    })
}

fn python() -> String {
    resolve_python().expect("python3").display().to_string()
}

/// A python that any user can execute (for `rlimits` mode, where the sample drops to uid 65534
/// on the host), if there is one.
fn system_python() -> Option<String> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(|p| std::fs::canonicalize(p).unwrap().display().to_string())
}

fn marker() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "ANVILMARK{}x{}Z",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Pids (other than ours) whose command line contains `marker`.
fn survivors(marker: &str) -> Vec<String> {
    let mut v = Vec::new();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            v.push(name);
        }
    }
    v
}

struct Ran {
    out: Outcome,
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

fn run_with(sb: &Sandbox, py: &str, code: &str, stdin: &[u8]) -> Ran {
    let m = marker();
    let code = format!("{code}\n# {m}\n");
    let argv = vec![py.to_string(), "-I".into(), "-c".into(), code];
    let out = sb
        .run(&Job {
            argv: &argv,
            files: &[],
            stdin,
            env: &[],
        })
        .expect("harness error");
    // Nothing the sample started may outlive the run.
    let left = survivors(&m);
    assert!(left.is_empty(), "survivors with marker {m}: {left:?}");
    Ran { out }
}

fn run(code: &str) -> Ran {
    run_with(auto(), &python(), code, b"")
}

/// For programs that are expected to time out.
fn run_tight(code: &str) -> Ran {
    run_with(tight(), &python(), code, b"")
}

fn host_alive() {
    let st = std::process::Command::new("true")
        .status()
        .expect("host can still spawn");
    assert!(st.success());
}

fn using_namespaces(sb: &Sandbox) -> bool {
    sb.report().iter().any(|l| l.layer == "pid-ns" && l.active)
}

#[test]
fn report_lists_every_layer() {
    let sb = auto();
    for l in sb.report() {
        eprintln!(
            "{:14} {:6} {}",
            l.layer,
            if l.active { "active" } else { "OFF" },
            l.detail
        );
    }
    let names: Vec<&str> = sb.report().iter().map(|l| l.layer).collect();
    assert_eq!(names, LAYERS);
    assert!(sb.report().iter().any(|l| l.layer == "rlimits" && l.active));
    for l in sb.report() {
        assert!(!l.detail.is_empty(), "{} has no detail", l.layer);
    }
    // describe() has one line per inactive layer.
    let inactive = sb.report().iter().filter(|l| !l.active).count();
    assert_eq!(sb.describe().lines().count(), inactive);
}

#[test]
fn full_isolation_works_or_says_what_is_missing() {
    match Sandbox::new(Isolation::Full, limits()) {
        Ok(sb) => assert!(sb.report().iter().all(|l| l.active || l.layer == "user-ns")),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("missing layers") || msg.contains("needs namespaces"),
                "{msg}"
            );
            eprintln!("--isolation full here: {msg}");
        }
    }
}

#[test]
fn isolation_flag_parses() {
    assert_eq!(
        "namespaces".parse::<Isolation>().unwrap(),
        Isolation::Namespaces
    );
    assert!("bogus".parse::<Isolation>().is_err());
}

#[test]
fn normal_exit_codes_and_result_channel() {
    let r = run("print('hello')");
    assert_eq!(r.out.status, Status::Exited(0));
    assert_eq!(r.stdout(), "hello\n");
    let r = run("import sys; print('bye', file=sys.stderr); sys.exit(3)");
    assert_eq!(r.out.status, Status::Exited(3));
    assert_eq!(r.stderr(), "bye\n");
    let r = run("import os; os.write(3, b'{\"passed\": 7}')");
    assert_eq!(r.out.status, Status::Exited(0));
    assert_eq!(r.out.result, b"{\"passed\": 7}");
}

#[test]
fn job_files_env_and_stdin() {
    let py = python();
    let files = vec![
        ("prog.py".to_string(), b"import sys, os\nfrom pkg import mod\nprint(mod.X, sys.stdin.read()[::-1], repr(sys.stdin.read()), os.environ['EXTRA'], sorted(os.listdir('.')))\n".to_vec()),
        ("pkg/__init__.py".to_string(), vec![]),
        ("pkg/mod.py".to_string(), b"X = 42\n".to_vec()),
    ];
    // -I leaves the script's directory off sys.path; put the cwd back explicitly.
    let argv = vec![
        py,
        "-I".into(),
        "-c".into(),
        "import sys; sys.path.insert(0, '.'); exec(open('prog.py').read())".into(),
    ];
    let env = vec![("EXTRA".to_string(), "yes".to_string())];
    let out = auto()
        .run(&Job {
            argv: &argv,
            files: &files,
            stdin: b"abc",
            env: &env,
        })
        .unwrap();
    assert_eq!(
        out.status,
        Status::Exited(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "42 cba '' yes ['pkg', 'prog.py']\n"
    );
}

#[test]
fn bad_jobs_are_harness_errors() {
    let argv = vec!["python3".to_string()];
    assert!(
        auto()
            .run(&Job {
                argv: &argv,
                files: &[],
                stdin: b"",
                env: &[]
            })
            .is_err()
    );
    let argv = vec![python()];
    let files = vec![("../escape".to_string(), vec![])];
    assert!(
        auto()
            .run(&Job {
                argv: &argv,
                files: &files,
                stdin: b"",
                env: &[]
            })
            .is_err()
    );
}

#[test]
fn infinite_loop_times_out() {
    let t = Instant::now();
    let r = run_tight("while True: pass");
    assert_eq!(r.out.status, Status::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn c_level_bignum_times_out() {
    let r = run_tight("x = 10**10**8");
    assert_eq!(r.out.status, Status::TimedOut);
}

#[test]
fn sleeping_forever_times_out() {
    let r = run_tight("import time; print('sleeping', flush=True); time.sleep(1000)");
    assert_eq!(r.out.status, Status::TimedOut);
    assert_eq!(r.stdout(), "sleeping\n");
    assert!(r.out.wall < Duration::from_secs(3));
}

#[test]
fn fork_bomb_is_contained() {
    let r = run_tight(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    );
    assert!(
        matches!(r.out.status, Status::TimedOut | Status::Signaled(_)),
        "{:?}",
        r.out.status
    );
    host_alive();
}

#[test]
fn setsid_daemon_is_killed_at_the_end() {
    let r = run("import os, time\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\n\
         time.sleep(0.2)\nprint('parent done')");
    assert_eq!(r.out.status, Status::Exited(0));
    assert_eq!(r.stdout(), "parent done\n");
    assert!(r.out.wall < Duration::from_secs(2));
}

#[test]
fn memory_bomb_is_stopped() {
    let r = run("l = []\nwhile True:\n    l.append(bytearray(10**7))");
    match r.out.status {
        Status::OutOfMemory => {}
        Status::Exited(1) => assert!(r.stderr().contains("MemoryError"), "{}", r.stderr()),
        other => panic!("unexpected {other:?}: {}", r.stderr()),
    }
    let cgroup = auto()
        .report()
        .iter()
        .any(|l| l.layer == "cgroup-memory" && l.active);
    if cgroup {
        assert_eq!(r.out.status, Status::OutOfMemory);
    }
    host_alive();
}

#[test]
fn cpu_limit_counts_all_threads() {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    let sb = SB.get_or_init(|| {
        let l = Limits {
            cpu: Duration::from_secs(1),
            wall: Duration::from_secs(20),
            ..Limits::default()
        };
        Sandbox::new(Isolation::Auto, l).unwrap()
    });
    let r = run_with(
        sb,
        &python(),
        "import threading\n\
         def spin():\n    while True: pass\n\
         for _ in range(3): threading.Thread(target=spin, daemon=True).start()\n\
         spin()",
        b"",
    );
    assert_eq!(r.out.status, Status::TimedOut);
    // Far below the 20 s wall clock: the CPU limit fired.
    assert!(r.out.wall < Duration::from_secs(10), "{:?}", r.out.wall);
}

#[test]
fn huge_output_is_capped() {
    let r = run_tight("while True: print('x' * 1000)");
    assert_eq!(r.out.status, Status::OutputLimit);
    assert_eq!(r.out.stdout.len(), limits().output_bytes);
    let r = run_tight("import os\nwhile True: os.write(3, b'y' * 4096)");
    assert_eq!(r.out.status, Status::OutputLimit);
    assert_eq!(r.out.result.len(), limits().output_bytes);
    // Up to the cap is fine.
    let r = run(&format!(
        "import sys; sys.stdout.write('z' * {})",
        limits().output_bytes
    ));
    assert_eq!(r.out.status, Status::Exited(0));
}

#[test]
fn closed_stdout_is_not_a_harness_error() {
    let r = run("import os; os.close(1); print('x')");
    assert!(
        matches!(r.out.status, Status::Exited(_)),
        "{:?}",
        r.out.status
    );
    let r = run("import os; os.close(0); os.close(3); print('still here')");
    assert_eq!(r.out.status, Status::Exited(0));
}

fn hostile_writes(canary: &Path, py: &str) -> String {
    format!(
        "import os\n\
         targets = [{canary:?}, '/etc/passwd', {py:?}, '/usr/bin/env']\n\
         for t in targets:\n\
         \x20   for op in ('write', 'remove'):\n\
         \x20       try:\n\
         \x20           if op == 'write':\n\
         \x20               open(t, 'a').write('pwned')\n\
         \x20           else:\n\
         \x20               os.remove(t)\n\
         \x20           print('DID', op, t)\n\
         \x20       except OSError as e:\n\
         \x20           print('denied', op, t, e.errno)\n\
         for d in ['/newdir', '/usr/newdir', {parent:?} + '/x']:\n\
         \x20   try:\n\
         \x20       os.mkdir(d); print('DID mkdir', d)\n\
         \x20   except OSError as e:\n\
         \x20       print('denied mkdir', d, e.errno)\n",
        canary = canary.display().to_string(),
        py = py,
        parent = canary.parent().unwrap().display().to_string(),
    )
}

fn check_untouched(dir: &Path, canary: &Path) {
    assert_eq!(std::fs::read_to_string(canary).unwrap(), "precious");
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[test]
fn cannot_touch_anything_outside_the_work_dir() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "precious").unwrap();
    let py = python();
    let r = run_with(auto(), &py, &hostile_writes(&canary, &py), b"");
    assert_eq!(r.out.status, Status::Exited(0), "{}", r.stderr());
    assert!(!r.stdout().contains("DID"), "{}", r.stdout());
    check_untouched(dir.path(), &canary);
    // The host's files are not even visible.
    let r = run(&format!(
        "import os\nfor p in [{:?}, '/work', '/root/.bash_history', '/etc/shadow']:\n    print(os.path.exists(p))",
        canary.display().to_string()
    ));
    assert_eq!(r.stdout(), "False\nFalse\nFalse\nFalse\n");
}

#[test]
fn filling_the_disk_is_bounded() {
    let before = free_tmp_bytes();
    let r = run("import errno\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       with open(f'f{n}', 'wb') as f:\n\
         \x20           for _ in range(64): f.write(b'x' * (1 << 20))\n\
         \x20       n += 1\n\
         except OSError as e:\n\
         \x20   print('stopped', n, errno.errorcode[e.errno])");
    let s = r.stdout();
    assert!(s.starts_with("stopped"), "{s} {}", r.stderr());
    assert!(s.contains("EFBIG") || s.contains("ENOSPC"), "{s}");
    let after = free_tmp_bytes();
    assert!(
        before.saturating_sub(after) < 32 << 20,
        "host /tmp lost {} bytes",
        before - after
    );
    // Many small files run into the tmpfs size / inode limits, not the host's.
    let r = run(
        "import errno\nn = 0\ntry:\n    while True:\n        open(f'g{n}', 'wb').write(b'y' * 65536); n += 1\nexcept OSError as e:\n    print('stopped', errno.errorcode[e.errno])",
    );
    assert!(r.stdout().starts_with("stopped E"), "{}", r.stdout());
}

fn free_tmp_bytes() -> u64 {
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let p = std::ffi::CString::new(std::env::temp_dir().to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut s) }, 0);
    s.f_bavail as u64 * s.f_frsize as u64
}

#[test]
fn open_files_are_limited() {
    let r = run(
        "fs = []\ntry:\n    while True: fs.append(open('/dev/null'))\nexcept OSError as e:\n    print(len(fs), e.errno)",
    );
    let s = r.stdout();
    let mut it = s.split_whitespace();
    let n: usize = it.next().unwrap().parse().unwrap();
    assert!(n < limits().open_files as usize, "{s}");
    assert_eq!(it.next(), Some("24"), "EMFILE expected: {s}");
}

fn network_code(port: u16) -> String {
    format!(
        "import socket\n\
         try:\n\
         \x20   s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n\
         \x20   print('CONNECTED')\n\
         except OSError as e:\n\
         \x20   print('no connection', e.errno)\n\
         try:\n\
         \x20   print('RESOLVED', socket.getaddrinfo('example.com', 80))\n\
         except OSError as e:\n\
         \x20   print('no dns')\n"
    )
}

fn assert_no_network(sb: &Sandbox, py: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = run_with(sb, py, &network_code(port), b"");
    let s = r.stdout();
    assert!(
        s.contains("no connection") && s.contains("no dns"),
        "{s} {}",
        r.stderr()
    );
    assert!(listener.accept().is_err(), "the listener saw a connection");
}

#[test]
fn no_network() {
    assert_no_network(auto(), &python());
}

#[test]
fn killing_the_parent_or_everyone_does_not_escape() {
    let r = run(
        "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError as e:\n    print('kill ppid', e.errno)\nprint('alive')",
    );
    assert!(
        matches!(r.out.status, Status::Exited(0)),
        "{:?}",
        r.out.status
    );
    let r = run(
        "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError as e:\n    print('kill -1', e.errno)\nprint('alive')",
    );
    assert!(
        matches!(r.out.status, Status::Exited(_) | Status::Signaled(_)),
        "{:?}",
        r.out.status
    );
    let r = run("import os, signal\nos.killpg(0, signal.SIGKILL)");
    assert!(
        matches!(r.out.status, Status::Signaled(9) | Status::Exited(_)),
        "{:?}",
        r.out.status
    );
    host_alive();
}

#[test]
fn dangerous_syscalls_are_denied() {
    let r = run("import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def check(name, rv):\n\
         \x20   print(name, rv, ctypes.get_errno())\n\
         check('ptrace', libc.syscall(101, 0, 0, 0, 0))\n\
         check('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\n\
         check('unshare', libc.unshare(0x10000000))\n\
         check('unshare_net', libc.unshare(0x40000000))\n\
         check('setns', libc.setns(0, 0))\n\
         check('bpf', libc.syscall(321, 0, 0, 0))\n\
         check('io_uring', libc.syscall(425, 1, 0))\n\
         check('clone_newuser', libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))\n");
    for line in r.stdout().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "-1", "{line}");
        assert_eq!(f[2], "1", "{line} (EPERM expected)");
    }
    assert_eq!(
        r.stdout().lines().count(),
        8,
        "{} {}",
        r.stdout(),
        r.stderr()
    );
    // Ordinary processes and threads still work (clone3 falls back to clone).
    let r = run("import subprocess, threading, sys\n\
         t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
         print(subprocess.run([sys.executable, '-I', '-c', 'print(6*7)'], capture_output=True, text=True).stdout.strip())");
    assert_eq!(r.stdout(), "42\n", "{}", r.stderr());
}

#[test]
fn identity_processes_and_hostname() {
    let r = run("import os, socket\n\
         print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n\
         print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n\
         print(socket.gethostname())\n\
         print(os.getcwd(), sorted(os.listdir('/')))");
    assert_eq!(r.out.status, Status::Exited(0), "{}", r.stderr());
    let lines: Vec<String> = r.stdout().lines().map(str::to_string).collect();
    assert_eq!(lines[0], "65534 65534 65534 []");
    if using_namespaces(auto()) {
        assert_eq!(lines[1], "[1, 2]", "only init and the sample are visible");
        assert_eq!(lines[2], "sandbox");
        assert!(lines[3].starts_with("/tmp ["), "{}", lines[3]);
        assert!(
            !lines[3].contains("'work'") && !lines[3].contains("'home'"),
            "{}",
            lines[3]
        );
    }
}

#[test]
fn concurrent_runs_from_threads() {
    let py = python();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let py = py.clone();
                s.spawn(move || {
                    let r = run_with(
                        auto(),
                        &py,
                        &format!("import os; print({i} * 2); os.write(3, b'{i}')"),
                        b"",
                    );
                    assert_eq!(r.out.status, Status::Exited(0), "{}", r.stderr());
                    assert_eq!(r.stdout(), format!("{}\n", i * 2));
                    assert_eq!(r.out.result, i.to_string().as_bytes());
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn namespaces_mode_without_cgroups() {
    let sb = match Sandbox::new(
        Isolation::Namespaces,
        Limits {
            wall: Duration::from_secs(20),
            ..limits()
        },
    ) {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    assert!(
        sb.report()
            .iter()
            .all(|l| !l.layer.starts_with("cgroup") || !l.active)
    );
    let r = run_with(
        &sb,
        &python(),
        "l = []\nwhile True:\n    l.append(bytearray(10**7))",
        b"",
    );
    assert_eq!(r.out.status, Status::Exited(1));
    assert!(r.stderr().contains("MemoryError"));
    let r = run_with(&sb, &python(), "import os; print(os.getuid())", b"");
    assert_eq!(r.stdout(), "65534\n");
}

/// Without namespaces (as root, dropping to uid 65534) an interpreter behind a directory closed
/// to other users cannot run: said before any run, naming the file.
#[test]
fn rlimits_mode_refuses_an_unreachable_interpreter() {
    let sb = Sandbox::new(Isolation::Rlimits, limits()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    let exe = closed.join("python3");
    std::fs::write(&exe, "").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dropped = sb
        .report()
        .iter()
        .any(|l| l.layer == "uid-drop" && l.active);
    match sb.check_executable(&exe) {
        Err(e) => {
            assert!(dropped);
            assert!(e.to_string().contains(&exe.display().to_string()), "{e}");
        }
        Ok(()) => assert!(!dropped, "uid 65534 cannot reach {}", exe.display()),
    }
    // With namespaces the interpreter's directories are bind-mounted: nothing to check.
    if using_namespaces(auto()) {
        auto().check_executable(&exe).unwrap();
    }
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.check_executable(&exe).unwrap();
}

/// The last-resort mode: no namespaces, a subreaper, Landlock and seccomp.
#[test]
fn rlimits_mode_still_contains_the_sample() {
    let Some(py) = system_python() else {
        eprintln!("skipping: no system-wide python3");
        return;
    };
    let sb = Sandbox::new(Isolation::Rlimits, limits()).unwrap();
    assert!(!using_namespaces(&sb));
    assert!(!sb.describe().is_empty());
    let r = run_with(&sb, &py, "import os; print('ok'); os.write(3, b'r')", b"");
    assert_eq!(r.out.status, Status::Exited(0), "{}", r.stderr());
    assert_eq!(r.out.result, b"r");
    // Daemons are found through the subreaper and killed.
    let r = run_with(
        &sb,
        &py,
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\ntime.sleep(0.2)",
        b"",
    );
    assert_eq!(r.out.status, Status::Exited(0), "{}", r.stderr());
    let r = run_with(
        &sb,
        &py,
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        b"",
    );
    assert!(matches!(
        r.out.status,
        Status::TimedOut | Status::Signaled(_)
    ));
    host_alive();
    // Files: Landlock.
    let landlock = sb
        .report()
        .iter()
        .any(|l| l.layer == "landlock" && l.active);
    if landlock {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "precious").unwrap();
        let r = run_with(&sb, &py, &hostile_writes(&canary, &py), b"");
        assert!(!r.stdout().contains("DID"), "{}", r.stdout());
        check_untouched(dir.path(), &canary);
        assert_no_network(&sb, &py);
    }
    let r = run_with(
        &sb,
        &py,
        "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError as e:\n    print('denied', e.errno)",
        b"",
    );
    assert_eq!(r.stdout(), "denied 1\n");
    host_alive();
}

/// Per-run overhead: `python3 -I -c pass` (the resolved interpreter) and a system
/// `python3 -I -S -c pass` through each isolation level vs a plain `Command` spawn of the same
/// interpreter (median of 50, interleaved).
/// `cargo test -p anvil-eval --test sandbox overhead -- --ignored --nocapture`
#[test]
#[ignore]
fn overhead() {
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let levels = [Isolation::Auto, Isolation::Namespaces, Isolation::Rlimits];
    let sandboxes: Vec<Sandbox> = levels
        .iter()
        .map(|&i| Sandbox::new(i, limits()).unwrap())
        .collect();
    let mut commands = vec![vec![python(), "-I".into(), "-c".into(), "pass".into()]];
    if let Some(sys) = system_python() {
        commands.push(vec![
            sys,
            "-I".into(),
            "-S".into(),
            "-c".into(),
            "pass".into(),
        ]);
    }
    for argv in commands {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); levels.len() + 1];
        for _ in 0..50 {
            let t = Instant::now();
            std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .status()
                .unwrap();
            times[0].push(t.elapsed());
            for (k, sb) in sandboxes.iter().enumerate() {
                let t = Instant::now();
                match sb.run(&Job {
                    argv: &argv,
                    files: &[],
                    stdin: b"",
                    env: &[],
                }) {
                    Ok(o) => assert_eq!(o.status, Status::Exited(0)),
                    // rlimits mode as root: uid 65534 may not reach a per-user interpreter.
                    Err(_) => continue,
                }
                times[k + 1].push(t.elapsed());
            }
        }
        eprintln!(
            "{}, median of 50: direct {:?}",
            argv.join(" "),
            median(&mut times[0])
        );
        for (k, l) in levels.iter().enumerate() {
            if !times[k + 1].is_empty() {
                eprintln!("  {l}: {:?}", median(&mut times[k + 1]));
            }
        }
    }
}

/// As root, namespaces can also be built without a user namespace (samples then drop to the
/// host's uid 65534).
#[test]
fn namespaces_without_a_user_namespace() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: not root");
        return;
    }
    let opts = Options {
        user_namespace: false,
        ..Options::default()
    };
    let sb = Sandbox::with_options(
        Isolation::Auto,
        Limits {
            wall: Duration::from_secs(20),
            ..limits()
        },
        &opts,
    )
    .unwrap();
    let userns = sb.report().iter().find(|l| l.layer == "user-ns").unwrap();
    assert!(
        !userns.active && userns.detail.contains("disabled"),
        "{userns:?}"
    );
    assert!(using_namespaces(&sb));
    let r = run_with(
        &sb,
        &python(),
        "import os, socket\nprint(os.getuid(), os.getgroups(), socket.gethostname(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
        b"",
    );
    assert_eq!(r.stdout(), "65534 [] sandbox [1, 2]\n", "{}", r.stderr());
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "precious").unwrap();
    let r = run_with(&sb, &python(), &hostile_writes(&canary, &python()), b"");
    assert!(!r.stdout().contains("DID"), "{}", r.stdout());
    check_untouched(dir.path(), &canary);
}
