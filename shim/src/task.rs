//! The task service containerd talks to: Create, Start, Kill, Wait, Delete, State, Pids,
//! Pause/Resume, Stats, Connect, Shutdown. One shim may serve several containers (a pod);
//! each carries its own bundle.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::{api, Task, TtrpcContext};
use containerd_shim_protos::api::ProcessInfo;
use containerd_shim_protos::ttrpc;
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use tokio::sync::{watch, Mutex};

use crate::cgroup::{self, ContainerCgroup};
use crate::config::{Config, Source};
use crate::container::{Container, Exit, State};
use crate::devices;
use crate::error::{ShimError, ShimResult};
use crate::events::Events;
use crate::hooks::{self, Stage};
use crate::io::{Console, StdioPaths, TenderStdio};
use crate::late_network::{self, Pending};
use crate::rootfs;
use crate::spec_map;
use crate::tender::{Tender, TenderError, Waiter};
use crate::unikernel::{refusal, Unikernel};

/// How long console output may take to drain after the tender exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The CRI annotation telling a pod's sandbox container from its workload containers.
const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Exit status of a tender killed by its seccomp filter (128 + SIGSYS).
const SECCOMP_KILLED: i32 = 128 + libc::SIGSYS;

type Shared = Arc<Mutex<Container>>;

/// The task service.
#[derive(Clone)]
pub struct TaskService {
    namespace: String,
    containers: Arc<Mutex<HashMap<String, Shared>>>,
    events: Arc<Events>,
    exit: Arc<ExitSignal>,
}

impl TaskService {
    /// A service for `namespace` that publishes through `publisher` and signals `exit` on
    /// Shutdown once no container is left.
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        TaskService {
            namespace: namespace.to_string(),
            containers: Arc::default(),
            events: Arc::new(Events::new(publisher, namespace)),
            exit,
        }
    }

    async fn get(&self, id: &str) -> ShimResult<Shared> {
        self.containers
            .lock()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("container {id} not found in this shim")))
    }

    async fn do_create(&self, req: &api::CreateTaskRequest) -> ShimResult<u32> {
        let mut phases = Phases::new();
        let id = req.id.clone();
        if req.terminal {
            return Err(ShimError::InvalidArgument(
                crate::io::IoError::Terminal.to_string(),
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(
                "restoring from a checkpoint is not supported for unikernels".into(),
            ));
        }
        if self.containers.lock().await.contains_key(&id) {
            return Err(ShimError::AlreadyExists(format!(
                "container {id} already exists in this shim"
            )));
        }
        let source = Source::from_options(req.options.as_ref())
            .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let config =
            Config::load(&source).map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(bundle.join("config.json")).map_err(|e| {
            ShimError::InvalidArgument(format!("read {}/config.json: {e}", bundle.display()))
        })?;
        let process = spec.process().as_ref().ok_or_else(|| {
            ShimError::InvalidArgument("the container spec has no process".into())
        })?;
        if process.terminal().unwrap_or(false) {
            return Err(ShimError::InvalidArgument(
                crate::io::IoError::Terminal.to_string(),
            ));
        }
        crate::hooks::check(&spec).map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let args = process.args().clone().unwrap_or_default();
        let path_env = process.env().as_ref().and_then(|env| {
            env.iter()
                .find_map(|kv| kv.strip_prefix("PATH="))
                .map(str::to_string)
        });
        let cwd = process.cwd().clone();
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        let rootfs_dir = if root.is_absolute() {
            root
        } else {
            bundle.join(root)
        };
        let mem_mib = spec_map::guest_memory_mib(&spec, config.default_memory_mib)
            .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let cgroup_path = cgroup::path_for(
            spec.linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            &self.namespace,
            &id,
        )
        .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;

        // From here on, everything made is undone on failure.
        let mounted = if req.rootfs.is_empty() {
            None
        } else {
            let mounts = req.rootfs.clone();
            let target = rootfs_dir.clone();
            tokio::task::spawn_blocking(move || rootfs::mount_all(&mounts, &target))
                .await
                .map_err(|e| ShimError::Internal(e.to_string()))?
                .map_err(|e| ShimError::Internal(e.to_string()))?;
            Some(rootfs_dir.clone())
        };
        // The cgroup, with its limits, before any process: each joins it itself before exec.
        let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
        let made = ContainerCgroup::create(&cgroup_path).and_then(|cg| {
            let applied = match &resources {
                Some(r) => cg.apply(r),
                None => Ok(()),
            };
            let files = applied.and_then(|()| cg.join_files());
            match files {
                Ok(f) => Ok((cg, f)),
                Err(e) => {
                    let _ = cg.remove();
                    Err(e)
                }
            }
        });
        let (cgroup, cgroup_files) = match made {
            Ok(c) => c,
            Err(e) => {
                if let Some(p) = &mounted {
                    rootfs::unmount(p);
                }
                return Err(ShimError::Internal(e.to_string()));
            }
        };
        phases.mark("spec+mount+cgroup");
        let undo_create = |m: &Option<PathBuf>| {
            let _ = cgroup.remove();
            if let Some(p) = m {
                rootfs::unmount(p);
            }
        };
        let sandbox = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(CONTAINER_TYPE_ANNOTATION))
            .is_some_and(|t| t == "sandbox");
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        // A container whose network is configured after Create: its unikernel, for Start.
        let mut held = None;
        let (mut tender, arg0, ready, mut console) = if sandbox {
            // A pod's sandbox container: its image's pause binary is a Linux program; a
            // tender in holder mode takes its place.
            let (mut console, tender_stdio) =
                match Console::open(&stdio, &id, &self.namespace).await {
                    Ok(c) => c,
                    Err(e) => {
                        undo_create(&mounted);
                        return Err(ShimError::InvalidArgument(e.to_string()));
                    }
                };
            let ns_plan = match crate::namespaces::plan(&spec) {
                Ok(p) => p,
                Err(e) => {
                    console.abort();
                    undo_create(&mounted);
                    return Err(ShimError::InvalidArgument(e.to_string()));
                }
            };
            match Tender::spawn_holder(config.tender(), tender_stdio, ns_plan, &cgroup_files).await
            {
                Ok(t) => (t, "pod sandbox holder".to_string(), None, console),
                Err(e) => {
                    console.abort();
                    undo_create(&mounted);
                    return Err(ShimError::Internal(e.to_string()));
                }
            }
        } else {
            let exe =
                match rootfs::resolve_executable(&rootfs_dir, &args, &cwd, path_env.as_deref()) {
                    Ok(exe) => exe,
                    Err(e) => {
                        undo_create(&mounted);
                        return Err(ShimError::InvalidArgument(e.to_string()));
                    }
                };
            let arg0 = exe.arg0.clone();
            // Devices: what the unikernel declares (the tender says, after its own checks),
            // bound to what the spec gives; taps are made in the container's namespace.
            let kernel = format!("/proc/{}/fd/{}", std::process::id(), exe.fd.as_raw_fd());
            let declared = match Tender::describe(&config.tender(), &kernel, &arg0).await {
                Ok(d) => d,
                Err(e) => {
                    undo_create(&mounted);
                    return Err(match e {
                        TenderError::Refused(msg) => {
                            ShimError::InvalidArgument(refusal(&arg0, &msg))
                        }
                        other => ShimError::Internal(other.to_string()),
                    });
                }
            };
            phases.mark("describe");
            let late = late_network::wanted(&spec, &declared);
            if late {
                // The NICs wait for Start; a disk without a source is still a Create error.
                let blocks: Vec<String> = declared
                    .iter()
                    .filter(|d| d.1 == devices::Kind::Block)
                    .map(|d| d.0.clone())
                    .collect();
                if let Err(e) = spec_map::bind_block_devices(&spec, &blocks, Path::new("/sys")) {
                    undo_create(&mounted);
                    return Err(ShimError::InvalidArgument(e.to_string()));
                }
            }
            let (mut console, tender_stdio) =
                match Console::open(&stdio, &id, &self.namespace).await {
                    Ok(c) => c,
                    Err(e) => {
                        undo_create(&mounted);
                        return Err(ShimError::InvalidArgument(e.to_string()));
                    }
                };
            let mut unikernel = Unikernel {
                id: id.clone(),
                spec: spec.clone(),
                bundle: bundle.clone(),
                rootfs: rootfs_dir.clone(),
                tender: config.tender(),
                mem_mib,
                exe,
                declared,
                args: args[1.min(args.len())..].to_vec(),
                cgroup_files,
                record_network: !late,
            };
            let launched = if late {
                match spawn_network_holder(&config, &spec, &unikernel.cgroup_files).await {
                    Ok(holder) => {
                        unikernel.spec = late_network::joined(&spec, holder.pid());
                        held = Some((unikernel, tender_stdio));
                        Ok((holder, None))
                    }
                    Err(e) => Err(e),
                }
            } else {
                unikernel
                    .launch(tender_stdio)
                    .await
                    .map(|(t, ready)| (t, Some(ready)))
            };
            phases.mark("tender");
            match launched {
                Ok((t, ready)) => (t, arg0, ready, console),
                Err(e) => {
                    console.abort();
                    undo_create(&mounted);
                    return Err(e);
                }
            }
        };
        let pid = tender.pid();
        set_oom_score_adj(&id, pid, process.oom_score_adj());
        // Hooks of the create stages see the tender, ready and waiting (nerdctl's
        // createRuntime hook configures networking this way), in runc's order and with the
        // state runc gives them.
        let state = hooks::state_json(&spec, &id, "creating", pid, &bundle);
        for stage in [
            Stage::Prestart,
            Stage::CreateRuntime,
            Stage::CreateContainer,
        ] {
            if let Err(e) = hooks::run(&spec, stage, &state).await {
                tender.kill_and_reap().await;
                console.abort();
                devices::cleanup_bundle(&bundle, &id);
                undo_create(&mounted);
                return Err(ShimError::FailedPrecondition(e.to_string()));
            }
        }
        if let Err(e) = std::fs::write(bundle.join(crate::shim::STATE_FILE), pid.to_string()) {
            tracing::warn!(container = %id, "write {}: {e}", crate::shim::STATE_FILE);
        }
        phases.mark("hooks");
        match &ready {
            Some(ready) => tracing::info!(
                container = %id,
                pid,
                guest_memory = ready.mem_size,
                allowed_syscalls = ready.allowed_syscalls,
                phases = %phases,
                "tender ready for {arg0}"
            ),
            None if held.is_some() => tracing::info!(
                container = %id,
                pid,
                phases = %phases,
                "{arg0} waits for Start: its network namespace is configured after Create"
            ),
            None => tracing::info!(container = %id, pid, "{arg0} started"),
        }
        let waiter = tender.waiter();
        let stderr_gate = console.stderr_gate();
        let (tx, rx) = watch::channel(None);
        let exit_tx = Arc::new(tx);
        let container = Arc::new(Mutex::new(Container {
            id: id.clone(),
            bundle: bundle.clone(),
            mounted_rootfs: mounted,
            pid,
            state: State::Created,
            stdio: stdio.clone(),
            cgroup: Some(cgroup),
            tender,
            guest_bytes: ready.as_ref().map_or(0, |r| r.mem_size),
            pending: None,
            stderr_gate,
            reaped: false,
            exit: None,
            exited: rx,
        }));
        self.containers
            .lock()
            .await
            .insert(id.clone(), container.clone());
        if let Some(waiter) = waiter {
            let events = self.events.clone();
            match held {
                Some((unikernel, stdio)) => {
                    container.lock().await.pending = Some(Pending {
                        unikernel,
                        stdio,
                        console,
                        exit_tx: exit_tx.clone(),
                    });
                    watch_holder(container, waiter, pid, exit_tx, events);
                }
                None => watch_exit(container, waiter, console, exit_tx, events),
            }
        }
        self.events
            .publish(TaskCreate {
                container_id: id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                    ..Default::default()
                })
                .into(),
                checkpoint: String::new(),
                pid,
                ..Default::default()
            })
            .await;
        Ok(pid)
    }

    /// Start of a container whose network was configured after Create: binds its NICs to what
    /// is now in the holder's namespace, launches the tender there, starts it and retires the
    /// holder. On failure the holder is killed too: the task ends (137) with nothing left.
    async fn start_held(&self, shared: &Shared, c: &mut Container) -> ShimResult<()> {
        let Some(Pending {
            unikernel,
            stdio,
            mut console,
            exit_tx,
        }) = c.pending.take()
        else {
            return Ok(());
        };
        let oom_score_adj = unikernel
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.oom_score_adj());
        let started = async {
            // It joined the container's cgroup before exec.
            let (mut tender, ready) = unikernel.launch(stdio).await?;
            if let Err(e) = tender.start() {
                tender.kill_and_reap().await;
                return Err(ShimError::Internal(e.to_string()));
            }
            Ok((tender, ready))
        }
        .await;
        let (mut tender, ready) = match started {
            Ok(t) => t,
            Err(e) => {
                console.abort();
                let _ = c.tender.signal(Signal::SIGKILL, false);
                return Err(e);
            }
        };
        let pid = tender.pid();
        c.guest_bytes = ready.mem_size;
        set_oom_score_adj(&c.id, pid, oom_score_adj);
        let waiter = tender.waiter();
        let holder = std::mem::replace(&mut c.tender, tender);
        c.pid = pid;
        // The tender holds the namespaces now; the holder's exit is not the task's.
        let _ = holder.signal(Signal::SIGKILL, false);
        if let Err(e) = std::fs::write(c.bundle.join(crate::shim::STATE_FILE), pid.to_string()) {
            tracing::warn!(container = %c.id, "write {}: {e}", crate::shim::STATE_FILE);
        }
        tracing::info!(
            container = %c.id,
            pid,
            guest_memory = ready.mem_size,
            allowed_syscalls = ready.allowed_syscalls,
            "tender ready and started in the network configured after Create"
        );
        if let Some(waiter) = waiter {
            watch_exit(
                shared.clone(),
                waiter,
                console,
                exit_tx,
                self.events.clone(),
            );
        }
        Ok(())
    }

    /// Runs `poststart`/`poststop` hooks of container `id`; their failures are logged only,
    /// as runc does.
    async fn run_late_hooks(&self, id: &str, stage: Stage, status: &str, pid: u32) {
        let bundle = match self.get(id).await {
            Ok(c) => c.lock().await.bundle.clone(),
            Err(_) => return,
        };
        self.run_late_hooks_in(&bundle, id, stage, status, pid)
            .await;
    }

    async fn run_late_hooks_in(
        &self,
        bundle: &Path,
        id: &str,
        stage: Stage,
        status: &str,
        pid: u32,
    ) {
        let Ok(spec) = Spec::load(bundle.join("config.json")) else {
            return;
        };
        let state = hooks::state_json(&spec, id, status, pid, bundle);
        if let Err(e) = hooks::run(&spec, stage, &state).await {
            tracing::warn!(container = %id, "{e}");
        }
    }

    async fn do_delete(&self, id: &str) -> ShimResult<api::DeleteResponse> {
        let began = std::time::Instant::now();
        let shared = self.get(id).await?;
        let mut exited = {
            let c = shared.lock().await;
            match c.state {
                _ if c.reaped => {}
                State::Running | State::Paused => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "container {id} is running: kill it before deleting it"
                    )))
                }
                State::Created => {
                    // Never started: the tender waits for Start. Kill it.
                    let _ = c.tender.signal(Signal::SIGKILL, false);
                }
                State::Stopped => {}
            }
            c.exited.clone()
        };
        let exit = wait_exit(&mut exited).await;
        let mut c = shared.lock().await;
        let bundle = c.bundle.clone();
        c.release();
        devices::cleanup_bundle(&bundle, id);
        let pid = c.pid;
        drop(c);
        self.run_late_hooks_in(&bundle, id, Stage::Poststop, "stopped", pid)
            .await;
        self.containers.lock().await.remove(id);
        remove_leftovers(&bundle);
        tracing::info!(
            container = %id,
            took_ms = format_args!("{:.2}", ms_since(began)),
            "deleted"
        );
        self.events
            .publish(TaskDelete {
                container_id: id.to_string(),
                pid,
                exit_status: exit.status,
                exited_at: Some(exit.timestamp()).into(),
                id: id.to_string(),
                ..Default::default()
            })
            .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        })
    }
}

/// Milliseconds since `t`, for the durations in the lifecycle log lines.
fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Removes files the shim wrote in the bundle for the `delete` action.
fn remove_leftovers(bundle: &Path) {
    let _ = std::fs::remove_file(bundle.join(crate::shim::STATE_FILE));
}

/// Waits until the exit is recorded.
async fn wait_exit(rx: &mut watch::Receiver<Option<Exit>>) -> Exit {
    match rx.wait_for(|e| e.is_some()).await {
        Ok(e) => e.expect("checked by wait_for"),
        // The exit task died without recording anything: report a kill.
        Err(_) => Exit {
            status: 137,
            at: SystemTime::now(),
        },
    }
}

/// Records the tender's exit: state, waiters, TaskExit.
async fn record_exit(
    shared: &Shared,
    code: i32,
    tx: &watch::Sender<Option<Exit>>,
    events: &Events,
) {
    let exit = Exit {
        status: code as u32,
        at: SystemTime::now(),
    };
    let (id, pid, oom) = {
        let mut c = shared.lock().await;
        c.state = State::Stopped;
        c.exit = Some(exit);
        let oom = c.cgroup.as_ref().is_some_and(|cg| cg.oom_killed());
        (c.id.clone(), c.pid, oom)
    };
    if oom {
        tracing::warn!(container = %id, pid, "the tender was killed by the OOM killer (memory limit)");
        events
            .publish(TaskOOM {
                container_id: id.clone(),
                ..Default::default()
            })
            .await;
    }
    if code == SECCOMP_KILLED {
        tracing::error!(
            container = %id,
            pid,
            "seccomp policy violation: the unikernel made a host system call its filter does \
             not allow; the tender was killed with SIGSYS (exit status 159)"
        );
    } else {
        tracing::info!(container = %id, pid, "tender exited with status {code}");
    }
    let _ = tx.send(Some(exit));
    events
        .publish(TaskExit {
            container_id: id.clone(),
            id,
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        })
        .await;
}

/// Copies the console and records the exit once the tender of `container` is reaped.
fn watch_exit(
    container: Shared,
    waiter: Waiter,
    mut console: Console,
    tx: Arc<watch::Sender<Option<Exit>>>,
    events: Arc<Events>,
) {
    tokio::spawn(async move {
        let code = waiter.wait().await;
        {
            let mut c = container.lock().await;
            // Reaped: its pid may be reused from now on; never signal it again.
            c.reaped = true;
            // Never started: its stderr said nothing Create did not; let it go.
            c.stderr_gate = None;
        }
        console.drain(DRAIN_TIMEOUT).await;
        record_exit(&container, code, &tx, &events).await;
    });
}

/// Records the exit of the holder `holder` of a container whose network is configured after
/// Create, unless Start retired it for the tender (which is then the task).
fn watch_holder(
    container: Shared,
    waiter: Waiter,
    holder: u32,
    tx: Arc<watch::Sender<Option<Exit>>>,
    events: Arc<Events>,
) {
    tokio::spawn(async move {
        let code = waiter.wait().await;
        let pending = {
            let mut c = container.lock().await;
            if c.pid != holder {
                return;
            }
            c.reaped = true;
            c.stderr_gate = None;
            c.pending.take()
        };
        if let Some(mut p) = pending {
            p.console.abort();
        }
        record_exit(&container, code, &tx, &events).await;
    });
}

/// Starts `nabla-tender --x-pause` in the new namespaces `spec` asks for, silent.
async fn spawn_network_holder(
    config: &Config,
    spec: &Spec,
    cgroup_files: &[std::os::fd::OwnedFd],
) -> ShimResult<Tender> {
    // The tender gets its own pid namespace at Start; the holder needs none.
    let ns = crate::namespaces::plan(spec)
        .map_err(|e| ShimError::InvalidArgument(e.to_string()))?
        .without_pid();
    let null = TenderStdio::null().map_err(|e| ShimError::Internal(format!("/dev/null: {e}")))?;
    Tender::spawn_holder(config.tender(), null, ns, cgroup_files)
        .await
        .map_err(|e| ShimError::Internal(e.to_string()))
}

/// Writes `process.oomScoreAdj` for `pid`. Lowering it needs CAP_SYS_RESOURCE, which a shim
/// may lack (as CRI's restrict_oom_score_adj assumes): a warning, not a failure.
fn set_oom_score_adj(id: &str, pid: u32, adj: Option<i32>) {
    if let Some(adj) = adj {
        if let Err(e) = std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()) {
            tracing::warn!(container = %id, "oom_score_adj {adj}: {e}");
        }
    }
}

/// Where Create's time went, for the log (and `make bench`'s breakdown).
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    /// Ends phase `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, d)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{name}:{:.2}ms", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

fn unsupported(what: &str) -> ttrpc::Error {
    ShimError::Unimplemented(format!(
        "{what} is not supported for unikernels: a nabla container runs one Solo5 unikernel, \
         with no shell, no other processes and no terminal"
    ))
    .into()
}

fn no_exec(exec_id: &str) -> ShimResult<()> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(ShimError::NotFound(format!(
            "exec process {exec_id} not found: unikernels have no exec processes"
        )))
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        match self.do_create(&req).await {
            Ok(pid) => Ok(api::CreateTaskResponse {
                pid,
                ..Default::default()
            }),
            Err(e) => {
                tracing::warn!(container = %req.id, "create failed: {e}");
                Err(e.into())
            }
        }
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> ttrpc::Result<api::StartResponse> {
        no_exec(&req.exec_id)?;
        let began = std::time::Instant::now();
        let shared = self.get(&req.id).await?;
        let mut c = shared.lock().await;
        if c.state != State::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} cannot start: it is {:?}",
                req.id, c.state
            ))
            .into());
        }
        if c.pending.is_some() {
            self.start_held(&shared, &mut c).await?;
        } else {
            c.tender
                .start()
                .map_err(|e| ShimError::Internal(e.to_string()))?;
        }
        c.state = State::Running;
        if let Some(gate) = c.stderr_gate.take() {
            gate.open();
        }
        let pid = c.pid;
        drop(c);
        tracing::info!(
            container = %req.id,
            pid,
            took_ms = format_args!("{:.2}", ms_since(began)),
            "started"
        );
        self.events
            .publish(TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            })
            .await;
        self.run_late_hooks(&req.id, Stage::Poststart, "running", pid)
            .await;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<api::Empty> {
        no_exec(&req.exec_id)?;
        let shared = self.get(&req.id).await?;
        let c = shared.lock().await;
        if c.state == State::Stopped || c.reaped {
            return Err(ShimError::NotFound("process already finished".into()).into());
        }
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            ShimError::InvalidArgument(format!("invalid signal number {}", req.signal))
        })?;
        match c.tender.signal(signal, req.all) {
            Ok(()) => {}
            Err(nix::Error::ESRCH) => {
                return Err(ShimError::NotFound("process already finished".into()).into())
            }
            Err(e) => return Err(ShimError::Internal(format!("kill: {e}")).into()),
        }
        // A frozen process only dies once thawed.
        if c.state == State::Paused && signal == Signal::SIGKILL {
            if let Some(cg) = &c.cgroup {
                let _ = cg.thaw();
            }
        }
        tracing::info!(container = %req.id, "sent {signal} to the tender");
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> ttrpc::Result<api::WaitResponse> {
        no_exec(&req.exec_id)?;
        let shared = self.get(&req.id).await?;
        let mut rx = shared.lock().await.exited.clone();
        let exit = wait_exit(&mut rx).await;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.timestamp()).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        no_exec(&req.exec_id)?;
        Ok(self.do_delete(&req.id).await?)
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> ttrpc::Result<api::StateResponse> {
        no_exec(&req.exec_id)?;
        let shared = self.get(&req.id).await?;
        let c = shared.lock().await;
        let mut resp = api::StateResponse {
            id: c.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: c.pid,
            stdin: c.stdio.stdin.clone(),
            stdout: c.stdio.stdout.clone(),
            stderr: c.stdio.stderr.clone(),
            terminal: c.stdio.terminal,
            ..Default::default()
        };
        resp.status = c.state.status().into();
        if let Some(exit) = c.exit {
            resp.exit_status = exit.status;
            resp.exited_at = Some(exit.timestamp()).into();
        }
        Ok(resp)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> ttrpc::Result<api::PidsResponse> {
        let shared = self.get(&req.id).await?;
        let c = shared.lock().await;
        // The task's one process, until Delete, also once it has exited: a containerd that
        // restarts after the exit deletes a task listing no process as a leaked shim, and the
        // exit status would be lost; listed, the task stays STOPPED with its status.
        let mut resp = api::PidsResponse::new();
        resp.processes.push(ProcessInfo {
            pid: c.pid,
            ..Default::default()
        });
        Ok(resp)
    }

    async fn pause(
        &self,
        _ctx: &TtrpcContext,
        req: api::PauseRequest,
    ) -> ttrpc::Result<api::Empty> {
        let shared = self.get(&req.id).await?;
        let mut c = shared.lock().await;
        if c.state != State::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running (it is {:?})",
                req.id, c.state
            ))
            .into());
        }
        let cg = c.cgroup.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {} has no cgroup", req.id))
        })?;
        cg.freeze()
            .map_err(|e| ShimError::Internal(e.to_string()))?;
        c.state = State::Paused;
        drop(c);
        self.events
            .publish(TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            })
            .await;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> ttrpc::Result<api::Empty> {
        let shared = self.get(&req.id).await?;
        let mut c = shared.lock().await;
        if c.state != State::Paused {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not paused (it is {:?})",
                req.id, c.state
            ))
            .into());
        }
        if let Some(cg) = &c.cgroup {
            cg.thaw().map_err(|e| ShimError::Internal(e.to_string()))?;
        }
        c.state = State::Running;
        drop(c);
        self.events
            .publish(TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            })
            .await;
        Ok(api::Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> ttrpc::Result<api::StatsResponse> {
        let shared = self.get(&req.id).await?;
        let c = shared.lock().await;
        let cg = c.cgroup.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {} has no cgroup", req.id))
        })?;
        let any = cg
            .metrics()
            .map_err(|e| ShimError::Internal(e.to_string()))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let task_pid = match self.get(&req.id).await {
            Ok(shared) => shared.lock().await.pid,
            Err(_) => 0,
        };
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> ttrpc::Result<api::Empty> {
        if self.containers.lock().await.is_empty() {
            tracing::info!("no container left: shutting down");
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CloseIORequest,
    ) -> ttrpc::Result<api::Empty> {
        // There is no stdin to close.
        Ok(api::Empty::new())
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ExecProcessRequest,
    ) -> ttrpc::Result<api::Empty> {
        Err(unsupported("exec"))
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ResizePtyRequest,
    ) -> ttrpc::Result<api::Empty> {
        Err(unsupported("resizing a terminal"))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> ttrpc::Result<api::Empty> {
        Err(unsupported("checkpoint"))
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> ttrpc::Result<api::Empty> {
        let shared = self.get(&req.id).await?;
        let Some(any) = req.resources.as_ref() else {
            return Ok(api::Empty::new());
        };
        // containerd sends the OCI LinuxResources as JSON in an Any.
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&any.value).map_err(|e| {
                ShimError::InvalidArgument(format!(
                    "update of {}: resources are not OCI LinuxResources ({}): {e}",
                    req.id, any.type_url
                ))
            })?;
        let c = shared.lock().await;
        if c.state == State::Stopped {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} has exited: nothing to update",
                req.id
            ))
            .into());
        }
        let cg = c.cgroup.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {} has no cgroup", req.id))
        })?;
        cg.update(&res, c.guest_bytes)
            .map_err(|e| ShimError::InvalidArgument(format!("container {}: {e}", req.id)))?;
        tracing::info!(container = %req.id, "resources updated");
        Ok(api::Empty::new())
    }
}
