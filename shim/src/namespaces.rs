//! The process environment the spec asks for, for the tender: its rlimits, and its
//! namespaces: a namespace entry with a path is joined, one without is created new (pid,
//! network, IPC, UTS, mount). The tender needs none of them (its taps arrive as descriptors),
//! but a container that asks for isolation must not sit in the host's namespaces, where tools
//! that configure "the container's" namespace through its pid (`ctr run --cni`, CNI hooks)
//! would change the host's.
//!
//! A pid namespace applies to the children of the process that enters it, so the tender is
//! forked from a short-lived thread that entered it first (a thread's namespaces are its
//! own). As a new namespace's init the tender turns terminating signals into exits itself
//! (see `nabla-tender`'s `signals` module): SIGTERM still stops it gracefully.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors preparing namespaces.
#[derive(Debug, thiserror::Error)]
#[error("namespace {path}: {source}")]
pub struct NamespaceError {
    path: String,
    source: std::io::Error,
}

/// What the tender's child side does before exec.
#[derive(Debug, Default)]
pub struct Plan {
    /// Namespaces to join: (fd, CLONE_NEW* flag).
    join: Vec<(OwnedFd, libc::c_int)>,
    /// CLONE_NEW* flags to create.
    new: libc::c_int,
    /// The spec's rlimits: (resource, soft, hard).
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// The pid namespace.
    pid: PidNamespace,
}

/// Where the process goes for its pid namespace.
#[derive(Debug, Default)]
enum PidNamespace {
    /// The shim's own (the spec has no pid entry).
    #[default]
    Inherit,
    /// A new one, with the process as its init.
    New,
    /// An existing one (a pod's shared pid namespace).
    Join(OwnedFd),
}

fn resource(t: oci_spec::runtime::PosixRlimitType) -> libc::__rlimit_resource_t {
    use oci_spec::runtime::PosixRlimitType as R;
    match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn flag(t: LinuxNamespaceType) -> Option<libc::c_int> {
    Some(match t {
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        _ => return None,
    })
}

/// Reads the spec's namespaces and opens the ones to join.
pub fn plan(spec: &Spec) -> Result<Plan, NamespaceError> {
    let mut p = Plan::default();
    let entries = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for r in spec
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
    {
        p.rlimits.push((resource(r.typ()), r.soft(), r.hard()));
    }
    for ns in entries {
        let open = |path: &std::path::Path| {
            File::open(path).map_err(|source| NamespaceError {
                path: path.display().to_string(),
                source,
            })
        };
        if ns.typ() == LinuxNamespaceType::Pid {
            p.pid = match ns.path() {
                Some(path) => PidNamespace::Join(open(path)?.into()),
                None => PidNamespace::New,
            };
            continue;
        }
        let Some(f) = flag(ns.typ()) else { continue };
        match ns.path() {
            Some(path) => p.join.push((open(path)?.into(), f)),
            None => p.new |= f,
        }
    }
    Ok(p)
}

impl Plan {
    /// The same plan in the shim's pid namespace: for a process that only holds the other
    /// namespaces until the tender is started in a pid namespace of its own.
    pub fn without_pid(mut self) -> Plan {
        self.pid = PidNamespace::Inherit;
        self
    }

    /// Spawns `cmd` (prepared with [`Plan::apply`]) in the plan's pid namespace.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<std::process::Child> {
        let enter = match &self.pid {
            PidNamespace::Inherit => return cmd.spawn(),
            PidNamespace::New => None,
            PidNamespace::Join(fd) => Some(fd.as_raw_fd()),
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: unshare/setns with a flag and a descriptor the plan owns; they
                    // change only this thread's namespace for children, and the thread ends
                    // right after the spawn.
                    let rc = unsafe {
                        match enter {
                            None => libc::unshare(libc::CLONE_NEWPID),
                            Some(fd) => libc::setns(fd, libc::CLONE_NEWPID),
                        }
                    };
                    if rc < 0 {
                        let e = std::io::Error::last_os_error();
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("entering the pid namespace: {e}"),
                        ));
                    }
                    cmd.spawn()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("spawn thread panicked")))
        })
    }

    /// Arranges for `cmd`'s child to join and create the namespaces other than pid before
    /// exec (the pid namespace is [`Plan::spawn`]'s). The plan must live until the command
    /// is spawned.
    pub fn apply(&self, cmd: &mut Command) {
        let join: Vec<(i32, libc::c_int)> = self
            .join
            .iter()
            .map(|(fd, f)| (fd.as_raw_fd(), *f))
            .collect();
        let new = self.new;
        let rlimits = self.rlimits.clone();
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // setns and unshare, which are async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (res, soft, hard) in &rlimits {
                    let lim = libc::rlimit {
                        rlim_cur: *soft,
                        rlim_max: *hard,
                    };
                    if libc::setrlimit(*res, &lim) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (fd, f) in &join {
                    if libc::setns(*fd, *f) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if new != 0 && libc::unshare(new) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
