//! `nabla-tender --x-pause`: the process that holds a Kubernetes pod (its sandbox container)
//! in place of a Linux `pause` binary. It keeps nothing open and sleeps in `pause()` under a
//! filter allowing only `pause` and `exit_group`, until a signal ends it.

use std::convert::Infallible;

use crate::launch::{close_fds_except, lock_down_prelude, LaunchError};
use crate::policy::{Policy, PolicyError};

/// Errors before the holder sleeps.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The filter could not be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No seccomp, or fds could not be closed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// The holder's policy: sleeping and exiting, nothing else.
pub fn policy() -> Policy {
    let mut p = Policy::default();
    p.allow_any(libc::SYS_pause);
    p.allow_any(libc::SYS_exit_group);
    p
}

/// Locks the process down and sleeps until a signal terminates it.
pub fn hold() -> Result<Infallible, SandboxError> {
    let filter = policy().compile()?;
    lock_down_prelude()?;
    close_fds_except(0, &[]).map_err(LaunchError::CloseFds)?;
    if seccompiler::apply_filter(&filter).is_err() {
        // SAFETY: _exit takes an integer and never returns.
        unsafe { libc::_exit(1) };
    }
    loop {
        // SAFETY: pause takes no arguments; it returns only after a handled signal, and
        // every disposition is the default (or, as a pid namespace's init, a handler that
        // exits), so a signal ends the process instead.
        unsafe { libc::syscall(libc::SYS_pause) };
    }
}
