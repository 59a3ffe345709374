//! The last steps before the guest runs (spec §2.3, §7): default signal dispositions and an
//! empty mask, every fd closed but the guest's, the seccomp filter, and the jump. After the
//! filter is installed no libc or Rust runtime code runs.

use std::os::unix::io::RawFd;

use seccompiler::BpfProgram;

/// Errors before the point of no return.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// `PR_SET_NO_NEW_PRIVS` failed or seccomp filters are unavailable.
    #[error("Seccomp is not available: {0}")]
    NoSeccomp(nix::Error),
    /// Closing fds failed.
    #[error("Could not close inherited file descriptors: {0}")]
    CloseFds(nix::Error),
}

/// Closes every fd from `from` upwards except those in `keep`.
pub fn close_fds_except(from: RawFd, keep: &[RawFd]) -> Result<(), nix::Error> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|fd| *fd >= from).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut lo = from as u32;
    for k in keep
        .iter()
        .map(|k| *k as u32)
        .chain(std::iter::once(u32::MAX))
    {
        if k > lo {
            let hi = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range takes plain integers; closing fds that no Rust object owns
            // (inherited or already handed over) cannot invalidate live Rust state.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) };
            nix::errno::Errno::result(rc)?;
        }
        lo = k.saturating_add(1);
    }
    Ok(())
}

fn reset_signals() {
    // The kernel's struct sigaction: glibc's wrapper refuses its own internal signals (32, 33),
    // which may arrive ignored all the same.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction/sigprocmask/sigaltstack with valid, fully initialised arguments;
    // restoring defaults cannot break invariants of the single-threaded tender, which runs
    // no more Rust code that relies on its handlers.
    unsafe {
        // Every signal, ignored ones included (SIG_IGN survives exec); SIGKILL and SIGSTOP
        // cannot be changed.
        for sig in (1..=64u64).filter(|s| *s != 9 && *s != 19) {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        libc::sigaltstack(&ss, std::ptr::null_mut());
    }
}

/// `PR_SET_NO_NEW_PRIVS`, a check that seccomp is there, then default signal dispositions
/// and an empty mask. Everything that can fail with a useful message happens here, while
/// stderr is still open.
pub fn lock_down_prelude() -> Result<(), LaunchError> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(LaunchError::NoSeccomp)?;
    // SAFETY: prctl with integer arguments; EINVAL means no CONFIG_SECCOMP.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(LaunchError::NoSeccomp)?;
    reset_signals();
    Ok(())
}

/// Locks the process down and enters the guest at `entry` with `%rsp = mem_size - 8` and
/// `%rdi = boot_info`. Only `keep` (console, device, epoll and timer fds) survives.
pub fn launch(
    entry: u64,
    mem_size: u64,
    boot_info: u64,
    keep: &[RawFd],
    filter: &BpfProgram,
) -> Result<std::convert::Infallible, LaunchError> {
    lock_down_prelude()?;
    close_fds_except(0, keep).map_err(LaunchError::CloseFds)?;
    if seccompiler::apply_filter(filter).is_err() {
        // No filter means no guest; stderr is gone, so the status alone must tell.
        // SAFETY: _exit takes an integer and never returns.
        unsafe { libc::_exit(1) };
    }
    let sp = mem_size - 8;
    // SAFETY: this is the point of no return the whole tender prepares for: `entry` and
    // `sp` lie inside guest memory, which holds the loaded, checked executable and the boot
    // info at `boot_info`; the tender's own state is never used again. Nothing on this stack
    // is dropped because control never comes back.
    unsafe {
        std::arch::asm!(
            "mov rsp, {sp}",
            "xor ebp, ebp",
            "jmp {entry}",
            sp = in(reg) sp,
            entry = in(reg) entry,
            in("rdi") boot_info,
            options(noreturn)
        )
    }
}
