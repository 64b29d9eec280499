//! Per-sample cgroups (v1 or v2), created only beneath the cgroup the evaluator itself runs in,
//! never at the root of a hierarchy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Our own cgroup directory in one hierarchy, usable as a parent for per-sample cgroups.
#[derive(Clone, Debug)]
pub(crate) struct Base {
    pub version: Version,
    pub dir: PathBuf,
}

#[derive(Debug)]
pub(crate) struct Discovery {
    pub memory: Result<Base, String>,
    pub pids: Result<Base, String>,
    /// v1 only: memory.memsw.* exists, so swap can be limited too.
    pub memsw: bool,
}

struct MountInfo {
    fstype: String,
    root: String,
    mount_point: String,
    super_opts: String,
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        v.push(MountInfo {
            fstype: post[0].to_string(),
            root: unescape_mount(pre[3]),
            mount_point: unescape_mount(pre[4]),
            super_opts: post[2].to_string(),
        });
    }
    v
}

/// (v1 controller lists with their paths, v2 path)
fn own_cgroups() -> (Vec<(Vec<String>, String)>, Option<String>) {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else {
            v1.push((
                ctrls.split(',').map(str::to_string).collect(),
                path.to_string(),
            ));
        }
    }
    (v1, v2)
}

fn join_under(mount_point: &str, mount_root: &str, own: &str) -> Option<PathBuf> {
    let rel = if mount_root == "/" {
        own
    } else {
        let r = own.strip_prefix(mount_root)?;
        if !(r.is_empty() || r.starts_with('/')) {
            return None;
        }
        r
    };
    let mut p = PathBuf::from(mount_point);
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
    }
    Some(p)
}

fn find_v1(
    controller: &str,
    mounts: &[MountInfo],
    own: &[(Vec<String>, String)],
) -> Option<Result<Base, String>> {
    let (_, path) = own
        .iter()
        .find(|(c, _)| c.iter().any(|c| c == controller))?;
    if path == "/" {
        return Some(Err(format!(
            "own cgroup in the v1 {controller} hierarchy is its root (/); not creating cgroups at a hierarchy root"
        )));
    }
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        if !m.super_opts.split(',').any(|o| o == controller) {
            continue;
        }
        if let Some(dir) = join_under(&m.mount_point, &m.root, path)
            && dir.is_dir()
        {
            return Some(Ok(Base {
                version: Version::V1,
                dir,
            }));
        }
    }
    Some(Err(format!(
        "v1 {controller} hierarchy (own cgroup {path}) is not mounted here"
    )))
}

fn find_v2(
    controller: &str,
    mounts: &[MountInfo],
    own: Option<&str>,
) -> Option<Result<Base, String>> {
    let path = own?;
    let m = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    if path == "/" {
        return Some(Err(format!(
            "own cgroup in the v2 hierarchy is its root (/) and {controller} is not a v1 controller here; \
             not creating cgroups at a hierarchy root"
        )));
    }
    let Some(dir) = join_under(&m.mount_point, &m.root, path) else {
        return Some(Err(format!(
            "own v2 cgroup {path} is outside the mounted cgroup2 tree"
        )));
    };
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if !avail.split_whitespace().any(|c| c == controller) {
        return Some(Err(format!(
            "v2 controller {controller} is not available in own cgroup {path} (not delegated)"
        )));
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == controller)
        && let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"))
    {
        {
            let why = if e.raw_os_error() == Some(libc::EBUSY) {
                "own cgroup holds processes, so v2's no-internal-processes rule forbids enabling it \
                 for children; run the evaluator in a delegated cgroup whose subtree_control enables it"
                    .to_string()
            } else {
                e.to_string()
            };
            return Some(Err(format!(
                "cannot enable v2 {controller} for children of own cgroup {path}: {why}"
            )));
        }
    }
    Some(Ok(Base {
        version: Version::V2,
        dir,
    }))
}

fn probe(base: &Base, controller: &str, memsw: bool) -> Result<(), String> {
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base
        .dir
        .join(format!("anvil-sbx-{}-probe{n}", std::process::id()));
    let _ = fs::remove_dir(&dir);
    fs::create_dir(&dir)
        .map_err(|e| format!("cannot create a cgroup under {}: {e}", base.dir.display()))?;
    let r = (|| -> io::Result<()> {
        match (base.version, controller) {
            (Version::V1, "memory") => {
                fs::write(dir.join("memory.limit_in_bytes"), "67108864")?;
                if memsw {
                    fs::write(dir.join("memory.memsw.limit_in_bytes"), "67108864")?;
                }
            }
            (Version::V2, "memory") => fs::write(dir.join("memory.max"), "67108864")?,
            (_, _) => fs::write(dir.join("pids.max"), "64")?,
        }
        Ok(())
    })();
    let _ = fs::remove_dir(&dir);
    r.map_err(|e| {
        format!(
            "cannot set limits in a cgroup under {}: {e}",
            base.dir.display()
        )
    })
}

/// Removes per-sample cgroups left behind by evaluator processes that no longer exist.
fn clean_stale(base: &Base) {
    let Ok(rd) = fs::read_dir(&base.dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("anvil-sbx-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = kill_and_remove(base.version, &e.path(), Duration::from_millis(200));
        }
    }
}

pub(crate) fn discover() -> Discovery {
    let mounts = mounts();
    let (v1, v2) = own_cgroups();
    let pick = |ctrl: &str| -> Result<Base, String> {
        if let Some(r) = find_v1(ctrl, &mounts, &v1) {
            // A v1 hierarchy binds the controller, so v2 cannot have it.
            return r;
        }
        find_v2(ctrl, &mounts, v2.as_deref()).unwrap_or_else(|| {
            Err(format!(
                "no cgroup hierarchy with the {ctrl} controller is mounted"
            ))
        })
    };
    let mut memory = pick("memory");
    let mut pids = pick("pids");
    let memsw = matches!(&memory, Ok(b) if b.version == Version::V1 && b.dir.join("memory.memsw.limit_in_bytes").exists());
    if let Ok(b) = &memory {
        clean_stale(b);
        if let Err(e) = probe(b, "memory", memsw) {
            memory = Err(e);
        }
    }
    if let Ok(b) = &pids {
        if !matches!(&memory, Ok(m) if m.dir == b.dir) {
            clean_stale(b);
        }
        if let Err(e) = probe(b, "pids", false) {
            pids = Err(e);
        }
    }
    Discovery {
        memory,
        pids,
        memsw,
    }
}

/// The cgroup(s) of one sample. Dropping it kills whatever is still inside and removes them.
pub(crate) struct RunCgroup {
    dirs: Vec<(Version, PathBuf)>,
    memory: Option<(Version, PathBuf)>,
}

impl RunCgroup {
    pub(crate) fn create(
        memory: Option<&Base>,
        pids: Option<&Base>,
        memsw: bool,
        name: &str,
        memory_bytes: u64,
        max_procs: u64,
    ) -> io::Result<RunCgroup> {
        let mut rc = RunCgroup {
            dirs: Vec::new(),
            memory: None,
        };
        let ensure = |b: &Base, rc: &mut RunCgroup| -> io::Result<PathBuf> {
            let dir = b.dir.join(name);
            if !rc.dirs.iter().any(|(_, d)| *d == dir) {
                fs::create_dir(&dir)?;
                rc.dirs.push((b.version, dir.clone()));
            }
            Ok(dir)
        };
        if let Some(b) = memory {
            let dir = ensure(b, &mut rc)?;
            match b.version {
                Version::V1 => {
                    fs::write(dir.join("memory.limit_in_bytes"), memory_bytes.to_string())?;
                    if memsw {
                        fs::write(
                            dir.join("memory.memsw.limit_in_bytes"),
                            memory_bytes.to_string(),
                        )?;
                    }
                    let _ = fs::write(dir.join("memory.swappiness"), "0");
                }
                Version::V2 => {
                    fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                    let _ = fs::write(dir.join("memory.oom.group"), "1");
                }
            }
            rc.memory = Some((b.version, dir));
        }
        if let Some(b) = pids {
            let dir = ensure(b, &mut rc)?;
            fs::write(dir.join("pids.max"), max_procs.to_string())?;
        }
        Ok(rc)
    }

    /// v1: the `tasks` files of this sample's cgroups, opened for writing. A single-threaded
    /// process that writes "0" to one moves itself without taking the global
    /// `cgroup_threadgroup_rwsem` (whose write side waits for an RCU grace period, ~10 ms);
    /// the permission check uses the opener's credentials, so the sandbox's init can join after
    /// dropping into its user namespace.
    pub(crate) fn v1_join_files(&self) -> io::Result<Vec<std::os::fd::OwnedFd>> {
        let mut v = Vec::new();
        for (ver, d) in &self.dirs {
            if *ver == Version::V1 {
                let f = fs::OpenOptions::new().write(true).open(d.join("tasks"))?;
                v.push(std::os::fd::OwnedFd::from(f));
            }
        }
        Ok(v)
    }

    /// v2: moves `pid` (a host pid) into this sample's cgroup through cgroup.procs.
    pub(crate) fn attach_v2(&self, pid: libc::pid_t) -> io::Result<()> {
        let s = pid.to_string();
        for (ver, d) in &self.dirs {
            if *ver == Version::V2 {
                fs::write(d.join("cgroup.procs"), &s)?;
            }
        }
        Ok(())
    }

    /// Whether the kernel OOM killer killed something in this cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((v, dir)) = &self.memory else {
            return false;
        };
        let counter = |file: &str, key: &str| -> Option<u64> {
            let text = fs::read_to_string(dir.join(file)).ok()?;
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        };
        match v {
            Version::V2 => counter("memory.events", "oom_kill").unwrap_or(0) > 0,
            Version::V1 => match counter("memory.oom_control", "oom_kill") {
                Some(n) => n > 0,
                // Kernels before 4.13 lack the counter: fall back to "the limit was hit".
                None => {
                    fs::read_to_string(dir.join("memory.failcnt"))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0
                }
            },
        }
    }

    /// Kills everything left, waits until the cgroups are empty, removes them. Returns whether
    /// anything had to be killed, or an error if a cgroup could not be emptied/removed.
    pub(crate) fn teardown(&mut self) -> io::Result<bool> {
        let mut killed = false;
        let mut first_err = None;
        for (v, d) in self.dirs.drain(..) {
            match kill_and_remove(v, &d, Duration::from_secs(3)) {
                Ok(k) => killed |= k,
                Err(e) => {
                    first_err
                        .get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", d.display())));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(killed),
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn procs(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn kill_and_remove(v: Version, dir: &Path, patience: Duration) -> io::Result<bool> {
    let start = Instant::now();
    let mut killed = false;
    let mut delay = Duration::from_micros(50);
    loop {
        let ps = procs(dir);
        if !ps.is_empty() {
            killed = true;
            if v == Version::V2 && dir.join("cgroup.kill").exists() {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
            } else {
                for p in ps {
                    // SAFETY: plain kill(2) on a pid read from our own sample's cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(killed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(killed),
            Err(e) => {
                if start.elapsed() > patience {
                    return Err(e);
                }
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
