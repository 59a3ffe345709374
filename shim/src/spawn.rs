//! Starting helper processes (the tender, `binary://` loggers) with chosen descriptors at
//! fixed numbers in the child, and nothing else inherited.
//!
//! Every descriptor the shim opens is close-on-exec, so a child sees only its stdio and the
//! descriptors mapped here. The sources are first duplicated above [`HIGH_FD`] so that no
//! `dup2` in the child overwrites a source another mapping still needs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Sources are duplicated to numbers at or above this before the fork.
const HIGH_FD: RawFd = 100;

/// Arranges for `command`'s child to get each `(fd, number)` pair as descriptor `number`.
/// The returned descriptors must stay alive until the command is spawned.
pub fn map_fds(command: &mut Command, fds: &[(&OwnedFd, RawFd)]) -> std::io::Result<Vec<OwnedFd>> {
    let mut high = Vec::with_capacity(fds.len());
    let mut pairs = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        let dup = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD))
            .map_err(std::io::Error::from)?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
        let dup = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        pairs.push((dup.as_raw_fd(), *target));
        high.push(dup);
    }
    // SAFETY: the closure runs in the forked child before exec and calls only dup2, which is
    // async-signal-safe; it allocates nothing and touches no lock. The source numbers stay
    // valid because `high` outlives the spawn (the caller keeps it).
    unsafe {
        command.pre_exec(move || {
            for (src, dst) in &pairs {
                if libc::dup2(*src, *dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(high)
}
