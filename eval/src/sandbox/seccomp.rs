//! Seccomp deny-list, assembled once per [`super::Sandbox`] as a classic-BPF program.
//!
//! The filter is a deny-list (the sample is ordinary Python, so an allow-list would be brittle):
//! anything that reconfigures the kernel, the mount table, namespaces, other processes' memory,
//! or exposes large attack surface (bpf, io_uring, perf, userfaultfd, keyrings, module loading)
//! fails with `EPERM`. `clone` is allowed only without namespace flags; `clone3` (whose flags sit
//! behind a pointer that BPF cannot read) fails with `ENOSYS`, so glibc falls back to `clone`.
//! A foreign syscall ABI (i386 `int 0x80`, x32) kills the process.

use libc::{c_long, sock_filter};

// seccomp_data: int nr; u32 arch; u64 ip; u64 args[6];
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i // little-endian: the low 32 bits of args[i]
}

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // EM_X86_64 | 64BIT | LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // EM_AARCH64 | 64BIT | LE

/// Syscalls that always fail with EPERM inside the sandbox.
fn denied() -> Vec<c_long> {
    use libc::*;
    #[allow(unused_mut)]
    let mut v: Vec<c_long> = vec![
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_kcmp,
        SYS_pidfd_getfd,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_fsopen,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fspick,
        SYS_move_mount,
        SYS_open_tree,
        SYS_mount_setattr,
        SYS_unshare,
        SYS_setns,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_fanotify_init,
        SYS_userfaultfd,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_reboot,
        SYS_swapon,
        SYS_swapoff,
        SYS_acct,
        SYS_syslog,
        SYS_quotactl,
        SYS_quotactl_fd,
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        SYS_settimeofday,
        SYS_clock_settime,
        SYS_clock_adjtime,
        SYS_adjtimex,
        SYS_sethostname,
        SYS_setdomainname,
        SYS_vhangup,
        SYS_lookup_dcookie,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        SYS_iopl,
        SYS_ioperm,
        SYS_modify_ldt,
        SYS_uselib,
        SYS__sysctl,
        SYS_nfsservctl,
        174, // create_module
        177, // get_kernel_syms
        178, // query_module
    ]);
    v
}

/// Namespace-creating clone flags (CLONE_NEWTIME shares its bit with the exit signal in
/// `clone()`, and `unshare`/`clone3` are denied outright, so it is not needed here).
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

#[derive(Clone, Copy)]
enum Target {
    Allow,
    Eperm,
    Enosys,
    Kill,
    Label(usize),
}

enum Insn {
    LoadAbs(u32),
    /// if A == k goto jt else goto jf (None = next instruction)
    Jeq(u32, Target, Option<Target>),
    Jge(u32, Target, Option<Target>),
    Jset(u32, Target, Option<Target>),
    Ret(Target),
    Label(usize),
}

/// Options that differ between isolation modes.
pub(crate) struct FilterOptions {
    /// Without a network namespace: only AF_UNIX sockets may be created.
    pub unix_sockets_only: bool,
    /// Without a PID namespace the sandbox relies on a subreaper; samples may not claim it.
    pub deny_subreaper: bool,
    /// The fork server's own filter (see `zygote.rs`): `mount` and `clone` with namespace flags
    /// stay allowed so that it can give each sample fresh namespaces and a fresh work dir. Samples
    /// never run under this filter alone: each one installs the full deny-list on top before its
    /// code runs.
    pub fork_server: bool,
}

/// Builds the BPF program. Jump targets are resolved in a second pass.
pub(crate) fn build(opts: &FilterOptions) -> Vec<sock_filter> {
    const L_CLONE: usize = 1;
    const L_SOCKET: usize = 2;
    const L_PRCTL: usize = 3;
    const L_KILL: usize = 4;
    const L_PERSONALITY: usize = 5;
    const L_IOCTL: usize = 6;

    let mut p: Vec<Insn> = vec![
        Insn::LoadAbs(OFF_ARCH),
        Insn::Jeq(AUDIT_ARCH, Target::Label(0), Some(Target::Kill)),
        Insn::Label(0),
        Insn::LoadAbs(OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.push(Insn::Jge(0x4000_0000, Target::Kill, None)); // x32 ABI
    for nr in denied() {
        if opts.fork_server && nr == libc::SYS_mount {
            continue;
        }
        p.push(Insn::Jeq(nr as u32, Target::Eperm, None));
    }
    p.push(Insn::Jeq(libc::SYS_clone3 as u32, Target::Enosys, None));
    p.push(Insn::Jeq(
        libc::SYS_clone as u32,
        Target::Label(L_CLONE),
        None,
    ));
    p.push(Insn::Jeq(
        libc::SYS_kill as u32,
        Target::Label(L_KILL),
        None,
    ));
    p.push(Insn::Jeq(
        libc::SYS_personality as u32,
        Target::Label(L_PERSONALITY),
        None,
    ));
    p.push(Insn::Jeq(
        libc::SYS_ioctl as u32,
        Target::Label(L_IOCTL),
        None,
    ));
    if opts.unix_sockets_only {
        p.push(Insn::Jeq(
            libc::SYS_socket as u32,
            Target::Label(L_SOCKET),
            None,
        ));
        p.push(Insn::Jeq(
            libc::SYS_socketpair as u32,
            Target::Label(L_SOCKET),
            None,
        ));
    }
    if opts.deny_subreaper {
        p.push(Insn::Jeq(
            libc::SYS_prctl as u32,
            Target::Label(L_PRCTL),
            None,
        ));
    }
    p.push(Insn::Ret(Target::Allow));

    // clone(flags, ...): flags are args[0] on x86_64 and aarch64.
    p.push(Insn::Label(L_CLONE));
    p.push(Insn::LoadAbs(off_arg_lo(0)));
    if !opts.fork_server {
        p.push(Insn::Jset(CLONE_NS_FLAGS, Target::Eperm, None));
    }
    p.push(Insn::Ret(Target::Allow));

    // kill(-1, sig): never signal "every process we may signal".
    p.push(Insn::Label(L_KILL));
    p.push(Insn::LoadAbs(off_arg_lo(0)));
    p.push(Insn::Jeq(u32::MAX, Target::Eperm, None));
    p.push(Insn::Ret(Target::Allow));

    // personality(): only queries (0xffffffff) and PER_LINUX.
    p.push(Insn::Label(L_PERSONALITY));
    p.push(Insn::LoadAbs(off_arg_lo(0)));
    p.push(Insn::Jeq(u32::MAX, Target::Allow, None));
    p.push(Insn::Jeq(0, Target::Allow, None));
    p.push(Insn::Ret(Target::Eperm));

    // ioctl(fd, TIOCSTI / TIOCLINUX): terminal input injection.
    p.push(Insn::Label(L_IOCTL));
    p.push(Insn::LoadAbs(off_arg_lo(1)));
    p.push(Insn::Jeq(libc::TIOCSTI as u32, Target::Eperm, None));
    p.push(Insn::Jeq(0x541C, Target::Eperm, None)); // TIOCLINUX
    p.push(Insn::Ret(Target::Allow));

    if opts.unix_sockets_only {
        p.push(Insn::Label(L_SOCKET));
        p.push(Insn::LoadAbs(off_arg_lo(0)));
        p.push(Insn::Jeq(libc::AF_UNIX as u32, Target::Allow, None));
        p.push(Insn::Ret(Target::Eperm));
    }
    if opts.deny_subreaper {
        p.push(Insn::Label(L_PRCTL));
        p.push(Insn::LoadAbs(off_arg_lo(0)));
        p.push(Insn::Jeq(
            libc::PR_SET_CHILD_SUBREAPER as u32,
            Target::Eperm,
            None,
        ));
        p.push(Insn::Ret(Target::Allow));
    }
    assemble(&p)
}

fn assemble(p: &[Insn]) -> Vec<sock_filter> {
    // Shared return blocks at the end of the program.
    let real: Vec<&Insn> = p.iter().filter(|i| !matches!(i, Insn::Label(_))).collect();
    let n = real.len();
    let ret_index = |t: Target| -> usize {
        match t {
            Target::Allow => n,
            Target::Eperm => n + 1,
            Target::Enosys => n + 2,
            Target::Kill => n + 3,
            Target::Label(_) => unreachable!(),
        }
    };
    // Label positions (index of the next real instruction).
    let mut labels = std::collections::HashMap::new();
    let mut idx = 0usize;
    for i in p {
        match i {
            Insn::Label(l) => {
                labels.insert(*l, idx);
            }
            _ => idx += 1,
        }
    }
    let resolve = |t: Target| -> usize {
        match t {
            Target::Label(l) => labels[&l],
            other => ret_index(other),
        }
    };
    let jump = |from: usize, t: Option<Target>| -> u8 {
        match t {
            None => 0,
            Some(t) => {
                let to = resolve(t);
                let off = to - from - 1;
                u8::try_from(off).expect("seccomp program too long for a BPF jump")
            }
        }
    };
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut out = Vec::with_capacity(n + 4);
    for (at, i) in real.iter().enumerate() {
        let ins = match i {
            Insn::LoadAbs(off) => stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, *off),
            Insn::Jeq(k, t, f) | Insn::Jge(k, t, f) | Insn::Jset(k, t, f) => {
                let op = match i {
                    Insn::Jeq(..) => libc::BPF_JEQ,
                    Insn::Jge(..) => libc::BPF_JGE,
                    _ => libc::BPF_JSET,
                };
                sock_filter {
                    code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
                    jt: jump(at, Some(*t)),
                    jf: jump(at, *f),
                    k: *k,
                }
            }
            Insn::Ret(t) => match t {
                // A `ret` to a label would be a jump; returns are always to shared blocks.
                Target::Label(_) => unreachable!(),
                t => stmt(
                    libc::BPF_JMP | libc::BPF_JA,
                    (ret_index(*t) - at - 1) as u32,
                ),
            },
            Insn::Label(_) => unreachable!(),
        };
        out.push(ins);
    }
    out.push(stmt(libc::BPF_RET | libc::BPF_K, RET_ALLOW));
    out.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        RET_ERRNO | libc::EPERM as u32,
    ));
    out.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        RET_ERRNO | libc::ENOSYS as u32,
    ));
    out.push(stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS));
    out
}

/// Whether this kernel supports seccomp filters at all.
pub(crate) fn available() -> Result<(), String> {
    // SAFETY: prctl with no pointer arguments.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if r < 0 {
        return Err(format!(
            "prctl(PR_GET_SECCOMP): {}",
            std::io::Error::last_os_error()
        ));
    }
    if r == 2 {
        // Already filtered: stacking still works (filters compose), which is fine.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn assembles_with_valid_jumps() {
        for (a, b, c) in [
            (false, false, false),
            (true, true, false),
            (false, false, true),
        ] {
            let p = build(&FilterOptions {
                unix_sockets_only: a,
                deny_subreaper: b,
                fork_server: c,
            });
            assert!(p.len() < 200);
            for (i, ins) in p.iter().enumerate() {
                let class = u32::from(ins.code) & 0x07;
                if class != libc::BPF_JMP {
                    continue;
                }
                if u32::from(ins.code) & 0xf0 == libc::BPF_JA {
                    assert!(i + 1 + (ins.k as usize) < p.len());
                } else {
                    assert!(i + 1 + (ins.jt as usize) < p.len());
                    assert!(i + 1 + (ins.jf as usize) < p.len());
                }
            }
            let last = p.last().unwrap();
            assert_eq!(u32::from(last.code) & 0x07, libc::BPF_RET);
        }
    }
}
