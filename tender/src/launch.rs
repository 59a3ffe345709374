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

/// `PR_SET_NO_NEW_PRIVS`, a check that seccomp is there, then default signal dispositions
/// and an empty mask (as a pid namespace's init: exits on terminating signals, see
/// [`crate::signals`]). Everything that can fail with a useful message happens here, while
/// stderr is still open.
pub fn lock_down_prelude() -> Result<(), LaunchError> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(LaunchError::NoSeccomp)?;
    // SAFETY: prctl with integer arguments; EINVAL means no CONFIG_SECCOMP.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    nix::errno::Errno::result(rc).map_err(LaunchError::NoSeccomp)?;
    crate::signals::reset();
    crate::signals::exit_on_signals_if_init();
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
