//! The container's cgroup: where the tender is placed before its guest runs, what Pause and
//! Resume freeze and thaw, what Stats reads, and what Delete removes.
//!
//! The path is the spec's `linux.cgroupsPath` (containerd's `ctr` sets `/NS/ID`), or
//! `/nabla/NS/ID` when the spec has none. The systemd form `slice:prefix:name` (kubelet with
//! the systemd cgroup driver) names the place systemd would give the container,
//! `/a.slice/a-b.slice/prefix-name.scope`; the group is made there directly in the cgroup
//! filesystem, not through systemd's D-Bus API. On a cgroup v1 (or hybrid) host the group is made in
//! the freezer, memory, cpu, cpuacct and pids hierarchies; on a unified host in cgroup2.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{hierarchies, Cgroup, MaxValue};
use cgroups_rs::FreezerState;
use containerd_shim_protos::cgroups::metrics::Metrics;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use oci_spec::runtime::LinuxResources;

/// The v1 controllers the container's cgroup is made in.
const CONTROLLERS: &[&str] = &["freezer", "memory", "cpu", "cpuacct", "pids"];

/// Errors managing the container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroups operation failed.
    #[error("cgroup {path}: {what}: {message}")]
    Op {
        /// The cgroup path.
        path: String,
        /// What was attempted.
        what: &'static str,
        /// The cause.
        message: String,
    },
    /// `linux.cgroupsPath` in the systemd form, malformed.
    #[error(
        "linux.cgroupsPath {0:?} is neither a path nor the systemd form slice:prefix:name \
         (e.g. kubepods-besteffort.slice:cri-containerd:ID)"
    )]
    BadSystemdPath(String),
    /// An Update asks for something that cannot change for a unikernel.
    #[error("cannot update {0}")]
    Update(String),
}

/// The container's cgroup.
pub struct ContainerCgroup {
    path: String,
    cg: Cgroup,
}

impl std::fmt::Debug for ContainerCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCgroup")
            .field("path", &self.path)
            .finish()
    }
}

/// The cgroup path for a container: the spec's `cgroupsPath` (a path, or the systemd form
/// `slice:prefix:name`), else `/nabla/NS/ID`.
pub fn path_for(spec_path: Option<&str>, namespace: &str, id: &str) -> Result<String, CgroupError> {
    match spec_path.filter(|p| !p.is_empty()) {
        Some(p) if p.contains(':') => {
            systemd_path(p).ok_or_else(|| CgroupError::BadSystemdPath(p.to_string()))
        }
        Some(p) => Ok(p.to_string()),
        None => Ok(format!("/nabla/{namespace}/{id}")),
    }
}

/// Arranges for `cmd`'s child to join the cgroup of `files` ([`ContainerCgroup::join_files`])
/// before anything else, so that it never runs outside it. The files must live until the
/// command is spawned.
pub fn join_in_child(cmd: &mut std::process::Command, files: &[OwnedFd]) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs in the forked, single-threaded child before exec and only
    // calls write(2), which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Where systemd puts slice `name` (`a-b.slice` → `/a.slice/a-b.slice`; `-.slice` is the root).
fn expand_slice(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".slice")?;
    if name.contains('/') || stem.is_empty() {
        return None;
    }
    if stem == "-" {
        return Some(String::new());
    }
    let mut path = String::new();
    let mut unit = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if part.is_empty() {
            return None;
        }
        if i > 0 {
            unit.push('-');
        }
        unit.push_str(part);
        path.push('/');
        path.push_str(&unit);
        path.push_str(".slice");
    }
    Some(path)
}

/// The cgroupfs path of systemd cgroup path `slice:prefix:name`, as runc's systemd driver
/// places it: an empty slice is `system.slice`; the unit is `prefix-name.scope`, or `name`
/// itself when it is a slice.
fn systemd_path(p: &str) -> Option<String> {
    let mut parts = p.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() || name.contains('/') || prefix.contains('/') {
        return None;
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if name.ends_with(".slice") {
        return expand_slice(name).filter(|p| !p.is_empty());
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{}/{unit}", expand_slice(slice)?))
}

impl ContainerCgroup {
    fn err(&self, what: &'static str, e: impl std::fmt::Display) -> CgroupError {
        CgroupError::Op {
            path: self.path.clone(),
            what,
            message: e.to_string(),
        }
    }

    fn handle(path: &str) -> Cgroup {
        let rel = path.trim_start_matches('/');
        let h = hierarchies::auto();
        if h.v2() {
            Cgroup::load(h, rel)
        } else {
            Cgroup::load_with_specified_controllers(
                h,
                rel,
                CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            )
        }
    }

    /// Creates the cgroup at `path` (idempotent).
    pub fn create(path: &str) -> Result<Self, CgroupError> {
        let cg = Self::handle(path);
        let me = ContainerCgroup {
            path: path.to_string(),
            cg,
        };
        me.cg.create().map_err(|e| me.err("create", e))?;
        Ok(me)
    }

    /// A handle on an existing cgroup (for cleanup without in-memory state).
    pub fn open(path: &str) -> Self {
        ContainerCgroup {
            path: path.to_string(),
            cg: Self::handle(path),
        }
    }

    /// Applies the spec's memory, CPU and pids limits (`linux.resources`), as runc would.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(limit) = res
            .memory()
            .as_ref()
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
        {
            let mem = self
                .cg
                .controller_of::<MemController>()
                .ok_or_else(|| self.err("memory limit", "no memory controller"))?;
            mem.set_limit(limit)
                .map_err(|e| self.err("set memory limit", e))?;
        }
        if let Some(cpu) = res.cpu() {
            let ctl = self
                .cg
                .controller_of::<CpuController>()
                .ok_or_else(|| self.err("cpu limits", "no cpu controller"))?;
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                ctl.set_shares(shares)
                    .map_err(|e| self.err("set cpu shares", e))?;
            }
            let quota = cpu.quota().filter(|q| *q != 0);
            let period = cpu.period().filter(|p| *p > 0);
            if quota.is_some() || period.is_some() {
                ctl.set_cfs_quota_and_period(quota, period)
                    .map_err(|e| self.err("set cpu quota", e))?;
            }
        }
        if let Some(pids) = res.pids() {
            let ctl = self
                .cg
                .controller_of::<PidController>()
                .ok_or_else(|| self.err("pids limit", "no pids controller"))?;
            let max = match pids.limit() {
                l if l > 0 => MaxValue::Value(l),
                _ => MaxValue::Max,
            };
            ctl.set_pid_max(max)
                .map_err(|e| self.err("set pids limit", e))?;
        }
        Ok(())
    }

    /// Applies an Update: memory, CPU and pids limits change; a memory limit the guest's
    /// memory (`guest_bytes`, fixed when it started) plus the tender's headroom would not fit
    /// in, and every other resource (cpusets, hugepages, block I/O, network, RDMA, unified
    /// keys), are refused before anything changes; device rules are ignored.
    pub fn update(&self, res: &LinuxResources, guest_bytes: u64) -> Result<(), CgroupError> {
        // Device rules come along with every CRI update (the whole resources of the spec);
        // they are ignored, as at Create: the tender's filter, not the device cgroup, decides
        // what the guest can reach.
        let mut refused = Vec::new();
        if res.cpu().as_ref().is_some_and(|c| {
            c.cpus().as_ref().is_some_and(|v| !v.is_empty())
                || c.mems().as_ref().is_some_and(|v| !v.is_empty())
                || c.realtime_runtime().is_some_and(|v| v != 0)
                || c.realtime_period().is_some_and(|v| v != 0)
        }) {
            refused.push("cpuset or realtime CPU settings");
        }
        if res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|h| h.iter().any(|l| l.limit() > 0))
        {
            refused.push("hugepage limits");
        }
        if res.block_io().is_some() {
            refused.push("block I/O weights and throttles");
        }
        if res.network().is_some() || res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            refused.push("network or RDMA resources");
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            refused.push("unified (cgroup v2) keys");
        }
        if !refused.is_empty() {
            return Err(CgroupError::Update(format!(
                "{}: a unikernel container can change its memory, CPU and pids limits only",
                refused.join(", ")
            )));
        }
        if let Some(m) = res.memory() {
            if let Some(limit) = m.limit().filter(|l| *l > 0) {
                let need = guest_bytes + crate::spec_map::TENDER_HEADROOM_MIB * 1024 * 1024;
                if (limit as u64) < need {
                    return Err(CgroupError::Update(format!(
                        "the memory limit to {} MiB: the guest's memory is {} MiB, fixed when it \
                         started, and the tender needs {} MiB beside it (at least {} MiB)",
                        limit as u64 >> 20,
                        guest_bytes >> 20,
                        crate::spec_map::TENDER_HEADROOM_MIB,
                        need.div_ceil(1 << 20)
                    )));
                }
            }
            if m.reservation().is_some() || m.swap().is_some() || m.kernel().is_some() {
                // Accepted and ignored, as for a runc container on a host without them.
                tracing::debug!(cgroup = %self.path, "memory settings other than the limit ignored");
            }
        }
        self.apply(res)
    }

    /// Files through which a freshly forked, single-threaded child puts itself into this
    /// cgroup by writing `0` ([`join_in_child`]): the v1 `tasks` files (moving the calling
    /// thread skips the kernel's global threadgroup lock, whose RCU wait makes a v1
    /// `cgroup.procs` write cost about 12 ms), or v2's `cgroup.procs`.
    pub fn join_files(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        let name = if self.cg.v2() {
            "cgroup.procs"
        } else {
            "tasks"
        };
        let mut dirs: Vec<PathBuf> = self
            .cg
            .subsystems()
            .iter()
            .map(|s| {
                let p = s.to_controller().path();
                // cpu and cpuacct are usually one hierarchy under two names.
                std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join(name))
                    .map(OwnedFd::from)
                    .map_err(|e| self.err("open for joining", format!("{}: {e}", d.display())))
            })
            .collect()
    }

    /// Freezes every process in the cgroup.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.freezer()?
            .freeze()
            .map_err(|e| self.err("freeze", e))?;
        // On v1 the write returns while the state may still be FREEZING.
        for _ in 0..1000 {
            match self.freezer()?.state() {
                Ok(FreezerState::Frozen) => return Ok(()),
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(e) => return Err(self.err("read freezer state", e)),
            }
        }
        Err(self.err("freeze", "still not frozen after 1 s"))
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.freezer()?.thaw().map_err(|e| self.err("thaw", e))
    }

    fn freezer(&self) -> Result<&FreezerController, CgroupError> {
        self.cg
            .controller_of::<FreezerController>()
            .ok_or_else(|| self.err("freeze", "no freezer controller on this host"))
    }

    /// Memory, CPU and pids statistics as the `Any` containerd's Stats call returns
    /// (`io.containerd.cgroups.v1.Metrics`, or v2 on a unified host).
    pub fn metrics(&self) -> Result<Any, CgroupError> {
        let any = if self.cg.v2() {
            let m = containerd_shim::cgroup::collect_metrics_v2(&self.cg)
                .map_err(|e| self.err("collect metrics", e))?;
            containerd_shim::util::convert_to_any(Box::new(m))
        } else {
            let mut m = containerd_shim::cgroup::collect_metrics(&self.cg)
                .map_err(|e| self.err("collect metrics", e))?;
            self.complete_v1_metrics(&mut m);
            containerd_shim::util::convert_to_any(Box::new(m))
        };
        any.map_err(|e| self.err("encode metrics", e))
    }

    /// Fills in what the crate's v1 collector leaves at zero and `ctr task metrics` (and
    /// CRI's stats) show: the memory limit, peak and failure count, and CPU time from
    /// cpuacct (total, per CPU, user and system).
    fn complete_v1_metrics(&self, m: &mut Metrics) {
        if let Some(mem) = self.cg.controller_of::<MemController>() {
            let stat = mem.memory_stat();
            let usage = m
                .memory
                .mut_or_insert_default()
                .usage
                .mut_or_insert_default();
            usage.limit = u64::try_from(stat.limit_in_bytes).unwrap_or(0);
            usage.max = stat.max_usage_in_bytes;
            usage.failcnt = stat.fail_cnt;
        }
        if let Some(acct) = self.cg.controller_of::<CpuAcctController>() {
            let acct = acct.cpuacct();
            let usage = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
            usage.total = acct.usage;
            usage.per_cpu = acct
                .usage_percpu
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // cpuacct.stat counts clock ticks; containerd's metrics are nanoseconds.
            // SAFETY: sysconf with a valid name has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            let ns_per_tick =
                1_000_000_000 / u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
            for line in acct.stat.lines() {
                let mut f = line.split_whitespace();
                let (Some(key), Some(Ok(ticks))) = (f.next(), f.next().map(str::parse::<u64>))
                else {
                    continue;
                };
                match key {
                    "user" => usage.user = ticks * ns_per_tick,
                    "system" => usage.kernel = ticks * ns_per_tick,
                    _ => {}
                }
            }
        }
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup (cgroup v1
    /// `memory.oom_control`, v2 `memory.events`). Checked when the tender exits, so the
    /// OOM event reaches containerd before the exit does.
    pub fn oom_killed(&self) -> bool {
        if self.cg.v2() {
            let events = Path::new("/sys/fs/cgroup")
                .join(self.path.trim_start_matches('/'))
                .join("memory.events");
            return std::fs::read_to_string(events)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .any(|n| n.trim().parse::<u64>().unwrap_or(0) > 0);
        }
        self.cg
            .controller_of::<MemController>()
            .is_some_and(|m| m.memory_stat().oom_control.oom_kill > 0)
    }

    /// Removes the cgroup, thawing it first so a frozen leftover can die. Best effort when
    /// `pid` processes remain: they are killed.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if !self.exists() {
            return Ok(());
        }
        if let Ok(f) = self.freezer() {
            let _ = f.thaw();
        }
        for p in self.cg.procs() {
            if let Ok(pid) = i32::try_from(p.pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let mut last = None;
        for _ in 0..50 {
            match self.cg.delete() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        match last {
            Some(e) => Err(self.err("remove", e)),
            None => Ok(()),
        }
    }

    /// Whether the cgroup still exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.cg.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths() {
        assert_eq!(path_for(None, "k8s.io", "c1").unwrap(), "/nabla/k8s.io/c1");
        assert_eq!(path_for(Some("/ns/c1"), "ns", "c1").unwrap(), "/ns/c1");
        assert_eq!(
            path_for(
                Some("kubepods-besteffort-pod12.slice:cri-containerd:abc"),
                "k8s.io",
                "abc"
            )
            .unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            path_for(Some(":nabla:x"), "n", "x").unwrap(),
            "/system.slice/nabla-x.scope"
        );
        assert_eq!(path_for(Some("-.slice::x"), "n", "x").unwrap(), "/x.scope");
        assert_eq!(
            path_for(Some("system.slice:p:my-pod.slice"), "n", "x").unwrap(),
            "/my.slice/my-pod.slice"
        );
        for bad in [
            "a:b",
            "notaslice:p:x",
            "a.slice:p:",
            "a--b.slice:p:x",
            "a.slice:p:x:y",
            "a.slice:p:../x",
        ] {
            assert!(path_for(Some(bad), "n", "x").is_err(), "{bad}");
        }
    }
}
