//! The container's cgroup: where the tender is placed before its guest runs, what Pause and
//! Resume freeze and thaw, what Stats reads, and what Delete removes.
//!
//! The path is the spec's `linux.cgroupsPath` (containerd's `ctr` sets `/NS/ID`), or
//! `/nabla/NS/ID` when the spec has none. On a cgroup v1 (or hybrid) host the group is made in
//! the freezer, memory, cpu, cpuacct and pids hierarchies; on a unified host in cgroup2.

use std::path::Path;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;
use cgroups_rs::FreezerState;
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

/// The cgroup path for a container: the spec's `cgroupsPath`, else `/nabla/NS/ID`.
pub fn path_for(spec_path: Option<&str>, namespace: &str, id: &str) -> String {
    match spec_path.filter(|p| !p.is_empty()) {
        // systemd-style "slice:prefix:name" paths are not handled by cgroupfs; use ours.
        Some(p) if !p.contains(':') => p.to_string(),
        _ => format!("/nabla/{namespace}/{id}"),
    }
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

    /// Applies the spec's memory and CPU limits (`linux.resources`), as runc would.
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
        Ok(())
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|e| self.err("add process", e))
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
            let m = containerd_shim::cgroup::collect_metrics(&self.cg)
                .map_err(|e| self.err("collect metrics", e))?;
            containerd_shim::util::convert_to_any(Box::new(m))
        };
        any.map_err(|e| self.err("encode metrics", e))
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
