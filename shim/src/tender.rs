//! One tender process: spawning `nabla-tender --x-control-fd`, reading its ready or error
//! report, telling it to start, signalling it, and learning how it ended.
//!
//! Exits are learnt from the `containerd-shim` crate's reaper (it reaps every child on
//! SIGCHLD and publishes the status on its monitor): the subscription is taken *before* the
//! spawn, so an exit cannot be missed, and the shim never calls `waitpid` itself, so it never
//! races the reaper. The status is the exit code, or 128 + the signal number.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim::asynchronous::monitor::{
    monitor_subscribe, monitor_unsubscribe, Subscription,
};
use containerd_shim::monitor::{Subject, Topic};
use nabla_proto::control::{shim_command, tender_report, Ready, ShimCommand, Start, TenderReport};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;
use prost::Message;
use tokio::net::UnixStream;

use crate::io::TenderStdio;
use crate::rootfs::Executable;
use crate::spawn::map_fds;

/// The control socket's number in the tender.
const CONTROL_FD: i32 = 3;
/// Where device descriptors (taps) land in the tender: right after the control socket.
pub const FIRST_DEVICE_FD: i32 = CONTROL_FD + 1;
/// How long the tender may take to check and open everything.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors launching or talking to the tender.
#[derive(Debug, thiserror::Error)]
pub enum TenderError {
    /// The tender binary could not be started.
    #[error("start {path}: {source} (set tender_path in the shim configuration)")]
    Spawn {
        /// The tender path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The tender refused the unikernel or its setup; the message is the tender's.
    #[error("{0}")]
    Refused(String),
    /// The tender ended or went silent without a report.
    #[error("nabla-tender {0}")]
    NoReport(String),
    /// The control channel failed.
    #[error("tender control channel: {0}")]
    Control(String),
    /// The crate's exit monitor failed.
    #[error("exit monitor: {0}")]
    Monitor(String),
}

/// What to launch.
pub struct Launch {
    /// The tender binary.
    pub tender: PathBuf,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// The unikernel.
    pub exe: Executable,
    /// Arguments for the guest (args\[1..\]).
    pub guest_args: Vec<String>,
    /// Device options for the tender (`--block:...`, `--net:NAME=@FD`, ...).
    pub device_args: Vec<String>,
    /// Descriptors the device options name, given to the tender from [`FIRST_DEVICE_FD`] on.
    pub device_fds: Vec<std::os::fd::OwnedFd>,
    /// The namespaces the spec asks for.
    pub namespaces: crate::namespaces::Plan,
    /// The tender's stdout and stderr.
    pub stdio: TenderStdio,
    /// The container's cgroup, joined by the child before exec
    /// ([`crate::cgroup::ContainerCgroup::join_files`]).
    pub cgroup_files: Vec<std::os::fd::OwnedFd>,
}

/// A running tender.
pub struct Tender {
    pid: u32,
    control: Option<UnixStream>,
    exits: Option<Subscription>,
    /// A pod sandbox holder (`--x-pause`): runs from the spawn on, Start is a no-op.
    holder: bool,
}

impl std::fmt::Debug for Tender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tender").field("pid", &self.pid).finish()
    }
}

impl Tender {
    /// Spawns the tender and waits for its report. On a refusal the tender has exited (or is
    /// killed) and been reaped before this returns.
    pub async fn spawn(launch: Launch) -> Result<(Tender, Ready), TenderError> {
        let exits = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| TenderError::Monitor(e.to_string()))?;
        let (ours, theirs) = match socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            Ok(p) => p,
            Err(e) => {
                let _ = monitor_unsubscribe(exits.id).await;
                return Err(TenderError::Control(format!("socketpair: {e}")));
            }
        };
        // The tender's end must block: it waits in read() for the start command.
        let _ = nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        );
        // The tender closes every inherited descriptor before opening KERNEL, so it opens the
        // unikernel through the shim's own descriptor, which stays open until the report:
        // the file the shim resolved inside the rootfs, whatever happens to paths meanwhile.
        let kernel = format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            launch.exe.fd.as_raw_fd()
        );
        let mut cmd = Command::new(&launch.tender);
        cmd.arg(format!("--x-control-fd={CONTROL_FD}"))
            .arg(format!("--mem={}", launch.mem_mib))
            .args(&launch.device_args)
            .arg("--")
            .arg(&kernel)
            .args(&launch.guest_args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(launch.stdio.stdout))
            .stderr(Stdio::from(launch.stdio.stderr))
            // Its own process group, so `kill --all` reaches exactly the tender.
            .process_group(0);
        crate::cgroup::join_in_child(&mut cmd, &launch.cgroup_files);
        launch.namespaces.apply(&mut cmd);
        let mut fd_map = vec![(&theirs, CONTROL_FD)];
        for (i, fd) in launch.device_fds.iter().enumerate() {
            fd_map.push((fd, FIRST_DEVICE_FD + i as i32));
        }
        let spawned = map_fds(&mut cmd, &fd_map)
            .and_then(|keep| launch.namespaces.spawn(&mut cmd).map(|child| (child, keep)));
        drop(cmd);
        drop(theirs);
        let child = match spawned {
            Ok((child, _keep)) => child,
            Err(source) => {
                let _ = monitor_unsubscribe(exits.id).await;
                return Err(TenderError::Spawn {
                    path: launch.tender,
                    source,
                });
            }
        };
        let pid = child.id();
        // Dropping a std Child neither waits nor kills: the crate's reaper reaps it.
        drop(child);
        // A SOCK_SEQPACKET socket read and written through a stream handle: each read
        // returns one whole packet (the buffer is larger than any report), each write sends one.
        let control = tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(ours))
            .map_err(|e| TenderError::Control(e.to_string()));
        let mut tender = Tender {
            pid,
            control: None,
            exits: Some(exits),
            holder: false,
        };
        let control = match control {
            Ok(c) => c,
            Err(e) => {
                tender.kill_and_reap().await;
                return Err(e);
            }
        };
        let report = tokio::time::timeout(READY_TIMEOUT, recv_report(&control)).await;
        let outcome = match report {
            Err(_) => Err(TenderError::NoReport(format!(
                "did not report readiness within {} s",
                READY_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => Err(TenderError::NoReport(
                "exited before reporting readiness (its diagnostics are on the task's stderr)"
                    .into(),
            )),
            Ok(Ok(Some(TenderReport {
                report: Some(tender_report::Report::Ready(ready)),
            }))) => Ok(ready),
            Ok(Ok(Some(TenderReport {
                report: Some(tender_report::Report::Error(e)),
            }))) => Err(TenderError::Refused(
                e.message.replace(&kernel, &launch.exe.arg0),
            )),
            Ok(Ok(Some(_))) => Err(TenderError::Control("unexpected report".into())),
        };
        match outcome {
            Ok(ready) => {
                tender.control = Some(control);
                Ok((tender, ready))
            }
            Err(e) => {
                drop(control);
                tender.kill_and_reap().await;
                Err(e)
            }
        }
    }

    /// Runs `nabla-tender --x-describe KERNEL`: every loader check, then the devices the
    /// unikernel declares. Reaped through the crate's exit monitor, like every child.
    pub async fn describe(
        tender: &Path,
        kernel: &str,
        arg0: &str,
    ) -> Result<Vec<(String, crate::devices::Kind)>, TenderError> {
        let mut cmd = Command::new(tender);
        cmd.arg("--x-describe").arg("--").arg(kernel).env_clear();
        let done = crate::child::run(cmd, Vec::new(), Some(READY_TIMEOUT))
            .await
            .map_err(|source| TenderError::Spawn {
                path: tender.to_path_buf(),
                source,
            })?;
        if done.status != 0 {
            let msg = done
                .stderr
                .lines()
                .next()
                .unwrap_or("exited without a message")
                .trim_start_matches("nabla-tender: ")
                .replace(kernel, arg0);
            return Err(TenderError::Refused(msg));
        }
        Ok(crate::devices::parse_describe(&done.stdout))
    }

    /// Spawns `nabla-tender --x-pause`, the process that holds a Kubernetes pod in place of
    /// the sandbox image's Linux `pause` binary: it keeps nothing open and sleeps under a
    /// filter allowing only `pause` and `exit_group` until a signal ends it.
    ///
    /// The holder lives in the pod's namespaces (`namespaces`, from the sandbox's spec): CRI
    /// gives the pod's other containers `/proc/<holder pid>/ns/...` as their namespaces. It
    /// joins the cgroup of `cgroup_files` before exec.
    pub async fn spawn_holder(
        tender: PathBuf,
        stdio: TenderStdio,
        namespaces: crate::namespaces::Plan,
        cgroup_files: &[std::os::fd::OwnedFd],
    ) -> Result<Tender, TenderError> {
        let exits = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| TenderError::Monitor(e.to_string()))?;
        let mut cmd = Command::new(&tender);
        cmd.arg("--x-pause")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr))
            .process_group(0);
        crate::cgroup::join_in_child(&mut cmd, cgroup_files);
        namespaces.apply(&mut cmd);
        let spawned = namespaces.spawn(&mut cmd);
        drop(namespaces);
        match spawned {
            Ok(child) => Ok(Tender {
                pid: child.id(),
                control: None,
                exits: Some(exits),
                holder: true,
            }),
            Err(source) => {
                let _ = monitor_unsubscribe(exits.id).await;
                Err(TenderError::Spawn {
                    path: tender,
                    source,
                })
            }
        }
    }

    /// The tender's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells the tender to install its filter and jump into the guest.
    pub fn start(&mut self) -> Result<(), TenderError> {
        if self.holder {
            return Ok(());
        }
        let control = self
            .control
            .take()
            .ok_or_else(|| TenderError::Control("already started".into()))?;
        let msg = ShimCommand {
            command: Some(shim_command::Command::Start(Start {})),
        }
        .encode_to_vec();
        match control.try_write(&msg) {
            Ok(n) if n == msg.len() => {}
            Ok(_) => return Err(TenderError::Control("send start: short write".into())),
            Err(e) => return Err(TenderError::Control(format!("send start: {e}"))),
        }
        Ok(())
    }

    /// Sends `signal` to the tender (or its whole process group with `all`).
    pub fn signal(&self, signal: Signal, all: bool) -> nix::Result<()> {
        let pid = Pid::from_raw(self.pid as i32);
        if all {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        }
    }

    /// Takes the exit subscription, for the task that waits for the exit.
    pub fn waiter(&mut self) -> Option<Waiter> {
        self.exits.take().map(|sub| Waiter { pid: self.pid, sub })
    }

    /// Kills the tender and waits until it is reaped (for failed Creates).
    pub async fn kill_and_reap(&mut self) -> i32 {
        self.control = None;
        let _ = self.signal(Signal::SIGKILL, false);
        match self.waiter() {
            Some(w) => w.wait().await,
            None => 137,
        }
    }
}

/// Waits for one tender's exit on the crate's exit monitor.
pub struct Waiter {
    pid: u32,
    sub: Subscription,
}

impl Waiter {
    /// Waits for `pid` on the subscription `sub`, taken before the process was spawned.
    pub fn new(pid: u32, sub: Subscription) -> Waiter {
        Waiter { pid, sub }
    }

    /// The tender's exit status: its exit code, or 128 + the signal that killed it.
    pub async fn wait(mut self) -> i32 {
        let mut code = 137;
        while let Some(ev) = self.sub.rx.recv().await {
            if matches!(ev.subject, Subject::Pid(p) if p == self.pid as i32) {
                code = ev.exit_code;
                break;
            }
        }
        let _ = monitor_unsubscribe(self.sub.id).await;
        code
    }
}

/// Receives one report; `None` on EOF (the tender exited).
async fn recv_report(control: &UnixStream) -> Result<Option<TenderReport>, TenderError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        control
            .readable()
            .await
            .map_err(|e| TenderError::Control(e.to_string()))?;
        match control.try_read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                return TenderReport::decode(&buf[..n])
                    .map(Some)
                    .map_err(|e| TenderError::Control(format!("bad report: {e}")))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                continue
            }
            Err(e) => return Err(TenderError::Control(e.to_string())),
        }
    }
}
