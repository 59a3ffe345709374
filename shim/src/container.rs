//! One container's state: its bundle and rootfs, its tender, its cgroup, its console, and
//! its lifecycle (created → running ⇄ paused → stopped), with the exit recorded once and
//! every waiter woken.

use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim_protos::api::Status;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::watch;

use crate::cgroup::ContainerCgroup;
use crate::io::{StderrGate, StdioPaths};
use crate::tender::Tender;

/// How a container's tender ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal.
    pub status: u32,
    /// When the shim learnt of it.
    pub at: SystemTime,
}

impl Exit {
    /// The exit time as a protobuf timestamp.
    pub fn timestamp(&self) -> Timestamp {
        timestamp(self.at)
    }
}

/// A protobuf timestamp for `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// The lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The tender checked everything and waits for Start.
    Created,
    /// The guest runs.
    Running,
    /// The guest is frozen.
    Paused,
    /// The tender is gone.
    Stopped,
}

impl State {
    /// The task API status.
    pub fn status(self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Paused => Status::PAUSED,
            State::Stopped => Status::STOPPED,
        }
    }
}

/// One container.
#[derive(Debug)]
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where the rootfs is mounted, if the shim mounted it.
    pub mounted_rootfs: Option<PathBuf>,
    /// The tender's pid.
    pub pid: u32,
    /// Lifecycle state.
    pub state: State,
    /// The requested stdio.
    pub stdio: StdioPaths,
    /// The container's cgroup, if one could be made.
    pub cgroup: Option<ContainerCgroup>,
    /// The tender (or, until Start, the holder of a container whose network is configured
    /// after Create).
    pub tender: Tender,
    /// The guest's memory in bytes (0 until its tender is ready).
    pub guest_bytes: u64,
    /// What Start launches in place of the holder, for such a container.
    pub pending: Option<crate::late_network::Pending>,
    /// Opens the tender's stderr at Start.
    pub stderr_gate: Option<StderrGate>,
    /// The tender has been reaped (its exit may not be recorded yet: output still drains).
    pub reaped: bool,
    /// The exit, once known.
    pub exit: Option<Exit>,
    /// Receives the exit when it is recorded.
    pub exited: watch::Receiver<Option<Exit>>,
}

impl Container {
    /// Unmounts the rootfs and removes the cgroup (best effort, logged).
    pub fn release(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.remove() {
                tracing::warn!(container = %self.id, "{e}");
            }
        }
        if let Some(rootfs) = self.mounted_rootfs.take() {
            crate::rootfs::unmount(&rootfs);
        }
    }
}
