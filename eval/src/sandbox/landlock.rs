//! Landlock (raw syscalls; the ABI is probed once). The ruleset is planned in the parent and
//! applied by the sandboxed child just before seccomp, using only async-signal-safe calls.

use std::ffi::CString;

const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const SYS_RESTRICT_SELF: libc::c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

pub(crate) const EXECUTE: u64 = 1 << 0;
pub(crate) const WRITE_FILE: u64 = 1 << 1;
pub(crate) const READ_FILE: u64 = 1 << 2;
pub(crate) const READ_DIR: u64 = 1 << 3;
const REFER: u64 = 1 << 13; // ABI 2
pub(crate) const TRUNCATE: u64 = 1 << 14; // ABI 3
pub(crate) const IOCTL_DEV: u64 = 1 << 15; // ABI 5
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

const NET_BIND_TCP: u64 = 1 << 0; // ABI 4
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX: u64 = 1 << 0; // ABI 6
const SCOPE_SIGNAL: u64 = 1 << 1;

pub(crate) const READ_ONLY: u64 = EXECUTE | READ_FILE | READ_DIR;
pub(crate) const ALL: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// The kernel's Landlock ABI version, or why there is none.
pub(crate) fn abi() -> Result<i32, String> {
    // SAFETY: the documented version query: NULL attr, size 0.
    let r = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => "kernel built without Landlock".into(),
            Some(libc::EOPNOTSUPP) => "Landlock disabled at boot (lsm= does not list it)".into(),
            _ => format!("landlock_create_ruleset: {e}"),
        });
    }
    Ok(r as i32)
}

#[derive(Clone)]
pub(crate) struct Plan {
    attr: RulesetAttr,
    attr_size: usize,
    handled_fs: u64,
    rules: Vec<(CString, u64)>,
}

impl Plan {
    pub(crate) fn new(abi: i32) -> Plan {
        let mut fs = (1u64 << 13) - 1;
        if abi >= 2 {
            fs |= REFER;
        }
        if abi >= 3 {
            fs |= TRUNCATE;
        }
        if abi >= 5 {
            fs |= IOCTL_DEV;
        }
        let net = if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        };
        let scoped = if abi >= 6 {
            SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL
        } else {
            0
        };
        let attr_size = if abi >= 6 {
            24
        } else if abi >= 4 {
            16
        } else {
            8
        };
        Plan {
            attr: RulesetAttr {
                handled_access_fs: fs,
                handled_access_net: net,
                scoped,
            },
            attr_size,
            handled_fs: fs,
            rules: Vec::new(),
        }
    }

    /// Allows `access` beneath `path` (rights not known to this ABI are dropped; a regular file
    /// only gets file rights).
    pub(crate) fn allow(&mut self, path: &str, access: u64, is_dir: bool) {
        let mut a = access & self.handled_fs;
        if !is_dir {
            a &= FILE_RIGHTS;
        }
        if let Ok(c) = CString::new(path) {
            self.rules.push((c, a));
        }
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "fs rights handled {:#x}; {} rule(s)",
            self.handled_fs,
            self.rules.len()
        );
        if self.attr.handled_access_net != 0 {
            s.push_str("; TCP bind/connect denied");
        }
        if self.attr.scoped != 0 {
            s.push_str("; signals and abstract unix sockets scoped to the sandbox");
        }
        s
    }

    /// Applies the ruleset to the calling (single-threaded, post-fork) process.
    /// Async-signal-safe: only raw syscalls. Missing paths are skipped. Returns 0 or an errno.
    pub(crate) unsafe fn apply(&self) -> i32 {
        unsafe {
            let fd = self.ruleset_fd();
            if fd < 0 {
                return -fd;
            }
            let r = libc::syscall(SYS_RESTRICT_SELF, fd, 0u32);
            let e = errno();
            libc::close(fd);
            if r < 0 {
                return e;
            }
            0
        }
    }

    /// Creates the ruleset with every rule added, without restricting anyone: the fork server
    /// keeps this fd and each of its samples calls `landlock_restrict_self` on it (a fresh
    /// domain per sample). Rules attach to inodes, and Landlock's path walk climbs from a mount
    /// to its mount point, so the rule on the server's work dir also covers each sample's tmpfs
    /// mounted over it. Returns the fd (O_CLOEXEC) or a negated errno. Async-signal-safe.
    pub(crate) unsafe fn ruleset_fd(&self) -> libc::c_int {
        unsafe {
            let fd = libc::syscall(
                SYS_CREATE_RULESET,
                &self.attr as *const RulesetAttr,
                self.attr_size,
                0u32,
            );
            if fd < 0 {
                return -errno();
            }
            let fd = fd as libc::c_int;
            for (path, access) in &self.rules {
                let pfd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                if pfd < 0 {
                    continue;
                }
                let pb = PathBeneath {
                    allowed_access: *access,
                    parent_fd: pfd,
                };
                let r = libc::syscall(
                    SYS_ADD_RULE,
                    fd,
                    RULE_PATH_BENEATH,
                    &pb as *const PathBeneath,
                    0u32,
                );
                let e = errno();
                libc::close(pfd);
                if r < 0 {
                    libc::close(fd);
                    return -e;
                }
            }
            fd
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
