use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::child::{MountOp, MountPlan};
use super::{
    DEV_NODES, ETC_ENTRIES, HOSTNAME, Limits, MIB, SANDBOX_GID, SANDBOX_UID, STAGE_CANDIDATES,
    SYSTEM_DIRS, SandboxError, WORK_DIR, io_err, warn_once,
};

pub(super) fn describe_op(op: &MountOp) -> String {
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

pub(super) fn validate_limits(l: &Limits) -> Result<(), SandboxError> {
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
pub(super) fn validate_files(
    files: &[(String, Vec<u8>)],
) -> Result<(Vec<String>, Vec<String>), SandboxError> {
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

pub(super) fn world_reachable(p: &Path) -> bool {
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
pub(super) fn build_mount_plan(
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

/// The private host work dir of `rlimits` mode.
pub(super) struct PlainDir {
    pub(super) path: PathBuf,
}

impl PlainDir {
    pub(super) fn create(
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

#[cfg(test)]
mod tests {
    use super::*;

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
