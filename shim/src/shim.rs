//! Bootstrap: the `start` action (spawn or reuse the daemon for the container's group and
//! write the bundle's `address` file), the `delete` action (clean up from the bundle alone),
//! `-info`, and the daemon's task service with its log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::util::write_str_to_file;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use containerd_shim::{api, Config as CrateConfig, Flags, StartOpts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroup::{self, ContainerCgroup};
use crate::config::{Config, Source, CONFIG_PATH_ENV};
use crate::container::timestamp;
use crate::task::TaskService;

/// The file in the bundle holding the tender's pid, for the `delete` action.
pub const STATE_FILE: &str = "init.pid";

/// Annotations that group containers into one shim (a pod), in order of preference.
const GROUP_LABELS: &[&str] = &[
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];

/// The shim.
pub struct NablaShim {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
    bundle: PathBuf,
    debug: bool,
}

/// Removes the daemon's socket named in the bundle's `address` file if nothing listens on it
/// any more: a daemon that was killed could not remove it itself. A socket still served (a
/// pod's daemon serving other containers) stays.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return;
    };
    let path = Path::new(path);
    let is_socket = std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    let refused = matches!(
        std::os::unix::net::UnixStream::connect(path),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if is_socket && refused {
        let _ = std::fs::remove_file(path);
    }
}

/// The log level: debug when containerd runs in debug mode, else the configuration's (a
/// configuration that does not load is reported at Create; its default level stands here).
fn log_level(source: &Source, debug: bool) -> String {
    if debug {
        return "debug".into();
    }
    Config::load(source)
        .map(|c| c.log_level)
        .unwrap_or_else(|_| "info".into())
}

/// The group a container's shim serves: its pod's sandbox id, else the container itself.
fn grouping(bundle: &Path, id: &str) -> String {
    let spec = Spec::load(bundle.join("config.json")).ok();
    spec.as_ref()
        .and_then(|s| s.annotations().as_ref())
        .and_then(|a| {
            GROUP_LABELS
                .iter()
                .find_map(|l| a.get(*l).filter(|v| !v.is_empty()).cloned())
        })
        .unwrap_or_else(|| id.to_string())
}

#[async_trait]
impl Shim for NablaShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut CrateConfig) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        NablaShim {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle,
            debug: args.debug,
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let source = Source::from_options(opts.extensions.first()).unwrap_or(Source::Default);
        crate::logging::init(&log_level(&source, self.debug));
        tracing::info!(namespace = %self.namespace, container = %opts.id, "start action");
        let group = grouping(&self.bundle, &opts.id);
        let config_path = source.path().map(|p| p.display().to_string());
        let mut vars = Vec::new();
        if let Some(p) = &config_path {
            vars.push((CONFIG_PATH_ENV, p.as_str()));
        }
        let address = spawn(opts, &group, vars).await?;
        write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<api::DeleteResponse> {
        let pid = std::fs::read_to_string(self.bundle.join(STATE_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0);
        if pid > 0 && is_tender(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let spec = Spec::load(self.bundle.join("config.json")).ok();
        let cg_path = cgroup::path_for(
            spec.as_ref()
                .and_then(|s| s.linux().as_ref())
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            &self.namespace,
            &self.id,
        )
        .unwrap_or_else(|_| format!("/nabla/{}/{}", self.namespace, self.id));
        let _ = ContainerCgroup::open(&cg_path).remove();
        let root = spec
            .as_ref()
            .and_then(|s| s.root().as_ref())
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        let rootfs = if root.is_absolute() {
            root
        } else {
            self.bundle.join(root)
        };
        crate::rootfs::unmount(&rootfs);
        crate::devices::cleanup_bundle(&self.bundle, &self.id);
        let _ = std::fs::remove_file(self.bundle.join(STATE_FILE));
        remove_dead_socket(&self.bundle);
        Ok(api::DeleteResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(timestamp(std::time::SystemTime::now())).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let source = match std::env::var(CONFIG_PATH_ENV) {
            Ok(p) if !p.is_empty() => Source::Path(p.into()),
            _ => Source::Default,
        };
        crate::logging::init(&log_level(&source, self.debug));
        tracing::info!(
            namespace = %self.namespace,
            "containerd-shim-nabla-v2 {} serving (group of {})",
            env!("CARGO_PKG_VERSION"),
            self.id
        );
        TaskService::new(&self.namespace, publisher, self.exit.clone())
    }

    fn runtime_info(
        runtime_id: &str,
        _options: Option<&Any>,
    ) -> containerd_shim::Result<RuntimeInfo> {
        Ok(RuntimeInfo {
            name: runtime_id.to_string(),
            version: Some(RuntimeVersion {
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }
}

/// Whether `pid` is (still) a nabla tender, so a recycled pid is never killed.
fn is_tender(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("nabla-tender"))
        .unwrap_or(false)
}
