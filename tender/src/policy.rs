//! The seccomp policy, declared as data (spec §3): the core rules, plus whatever each device
//! module adds for its own fds. Compiled with `seccompiler`; default action: kill.

use std::collections::BTreeMap;
use std::os::unix::io::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// `ARCH_SET_FS`, the one `arch_prctl` operation a guest may use (TLS).
const ARCH_SET_FS: u64 = 0x1002;

/// Errors building or compiling the filter.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// seccompiler refused a rule or the filter.
    #[error("Could not build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// seccompiler could not compile the filter to BPF.
    #[error("Could not compile the seccomp filter: {0}")]
    Compile(#[from] seccompiler::Error),
}

/// One condition on a syscall argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    /// Argument `n` equals the value (full 64 bits).
    Eq(u8, u64),
    /// Argument `n` is at most the value (unsigned 64 bits).
    Le(u8, u64),
}

/// The allow-list: syscall number → alternatives, each a conjunction of argument conditions.
/// An empty alternative list means "any arguments".
#[derive(Debug, Default, Clone)]
pub struct Policy {
    rules: BTreeMap<i64, Vec<Vec<Arg>>>,
}

impl Policy {
    /// The core rules every guest gets (spec §3, rules 1–7).
    pub fn core(epoll_fd: RawFd, timer_fd: RawFd) -> Self {
        let mut p = Policy::default();
        p.allow(libc::SYS_write, &[Arg::Eq(0, 1)]);
        p.allow_any(libc::SYS_exit_group);
        p.allow(libc::SYS_epoll_pwait, &[Arg::Eq(0, epoll_fd as u64)]);
        p.allow(libc::SYS_timerfd_settime, &[Arg::Eq(0, timer_fd as u64)]);
        p.allow(
            libc::SYS_clock_gettime,
            &[Arg::Eq(0, libc::CLOCK_MONOTONIC as u64)],
        );
        p.allow(
            libc::SYS_clock_gettime,
            &[Arg::Eq(0, libc::CLOCK_REALTIME as u64)],
        );
        p.allow(libc::SYS_arch_prctl, &[Arg::Eq(0, ARCH_SET_FS)]);
        p
    }

    /// Allows `nr` when every condition in `args` holds (an alternative to existing rules).
    pub fn allow(&mut self, nr: i64, args: &[Arg]) {
        assert!(!args.is_empty(), "use allow_any for unconditional rules");
        self.rules.entry(nr).or_default().push(args.to_vec());
    }

    /// Allows `nr` with any arguments.
    pub fn allow_any(&mut self, nr: i64) {
        self.rules.insert(nr, Vec::new());
    }

    /// Distinct syscalls the policy allows.
    pub fn syscall_count(&self) -> usize {
        self.rules.len()
    }

    /// Names of the allowed syscalls with their conditions, for diagnostics.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|(nr, alts)| {
                if alts.is_empty() {
                    format!("{nr}: any")
                } else {
                    let alts: Vec<String> = alts.iter().map(|a| format!("{a:?}")).collect();
                    format!("{nr}: {}", alts.join(" | "))
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Compiles the policy to BPF: allowed calls pass, everything else kills (as
    /// `SCMP_ACT_KILL`, i.e. SIGSYS for the single-threaded tender), wrong arch too.
    pub fn compile(&self) -> Result<BpfProgram, PolicyError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (nr, alts) in &self.rules {
            let compiled = alts
                .iter()
                .map(|conds| {
                    let conds = conds
                        .iter()
                        .map(|c| match *c {
                            Arg::Eq(i, v) => SeccompCondition::new(
                                i,
                                SeccompCmpArgLen::Qword,
                                SeccompCmpOp::Eq,
                                v,
                            ),
                            Arg::Le(i, v) => SeccompCondition::new(
                                i,
                                SeccompCmpArgLen::Qword,
                                SeccompCmpOp::Le,
                                v,
                            ),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    SeccompRule::new(conds)
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(*nr, compiled);
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::KillThread,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )?;
        Ok(BpfProgram::try_from(filter)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_policy_has_six_syscalls() {
        let p = Policy::core(5, 6);
        assert_eq!(p.syscall_count(), 6);
        assert!(!p.compile().unwrap().is_empty());
    }
}
