//! A private containerd 2.x for tests, benchmarks and the demo: its own socket, root, state and
//! opt directories under one temporary base, its own namespace, the nabla runtime and runc on
//! its PATH. Stopping it stops the shims it started (found by its socket in their command line,
//! never by name), unmounts what is left under its directories and removes them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::tender::{bin_dir, workspace_root};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The directory holding `containerd` and `ctr` (`NABLA_CONTAINERD_BIN` overrides).
pub fn containerd_bin_dir() -> PathBuf {
    std::env::var_os("NABLA_CONTAINERD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".deps/containerd/usr/bin"))
}

/// A running private containerd.
pub struct PrivateContainerd {
    base: PathBuf,
    namespace: String,
    child: Option<Child>,
    extra_config: String,
}

/// A unique name for a test object: `PREFIX-PID-N`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl PrivateContainerd {
    /// Starts a daemon; panics with its log if it does not come up.
    pub fn start() -> PrivateContainerd {
        Self::start_with("")
    }

    /// Starts a daemon with `extra` appended to its configuration (TOML, version 3).
    pub fn start_with(extra: &str) -> PrivateContainerd {
        let bin = containerd_bin_dir();
        assert!(
            bin.join("containerd").exists(),
            "{} is missing: run scripts/install-deps.sh",
            bin.join("containerd").display()
        );
        let base = std::env::temp_dir().join(unique("nabla-ctrd"));
        std::fs::create_dir_all(&base).expect("create containerd base");
        let mut c = PrivateContainerd {
            namespace: unique("nabla"),
            base,
            child: None,
            extra_config: extra.to_string(),
        };
        c.write_config();
        c.spawn();
        c
    }

    fn write_config(&self) {
        let b = self.base.display();
        let cfg = format!(
            r#"version = 3
root = "{b}/root"
state = "{b}/state"
[grpc]
  address = "{b}/containerd.sock"
[ttrpc]
  address = "{b}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
{}
"#,
            self.extra_config
        );
        std::fs::write(self.base.join("config.toml"), cfg).expect("write containerd config");
    }

    fn spawn(&mut self) {
        let bin = containerd_bin_dir();
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin_dir().display(),
            bin.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join("containerd.log"))
            .expect("containerd log");
        let child = Command::new(bin.join("containerd"))
            .arg("--config")
            .arg(self.base.join("config.toml"))
            .env("PATH", path)
            // containerd looks for shims in its working directory first.
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.socket().exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("containerd did not start:\n{}", self.log_tail());
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.base.join("containerd.sock")
    }

    /// The namespace the fixture's `ctr` calls use.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The base directory (config, log, root, state).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// A `ctr` command against this daemon and namespace.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new(containerd_bin_dir().join("ctr"));
        c.arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace);
        c
    }

    /// Runs `ctr ARGS` and returns its output.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// The host pid of the running task `id`, from `ctr task ls`; panics if there is none.
    pub fn task_pid(&self, id: &str) -> i32 {
        let out = self.ctr(&["task", "ls"]);
        let ls = String::from_utf8_lossy(&out.stdout);
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no task {id}: {ls}"))
    }

    /// Imports an image tar; panics with ctr's message on failure.
    pub fn import(&self, tar: &Path) {
        let out = self.ctr(&["image", "import", &tar.to_string_lossy()]);
        assert!(
            out.status.success(),
            "ctr image import {}: {}",
            tar.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.base.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Pids of shim processes started by this daemon (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let needle = self.socket().to_string_lossy().into_owned();
        processes_mentioning(&needle)
    }

    /// The nabla shims this containerd started (not `ctr` or other clients of its socket).
    pub fn nabla_shim_pids(&self) -> Vec<i32> {
        self.shim_pids()
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("containerd-shim-nabla-v2"))
            })
            .collect()
    }

    /// Stops the daemon only (SIGTERM, then SIGKILL); shims and state stay, as in an outage.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the daemon on the same directories.
    pub fn restart(&mut self) {
        self.stop_daemon();
        self.spawn();
    }

    /// Stops everything and removes the directories.
    pub fn stop(&mut self) {
        self.stop_daemon();
        // What the shims run (tenders, pod holders) first: killed shims would leave them to init.
        let shims = self.shim_pids();
        for pid in shims
            .iter()
            .flat_map(|s| children_of(*s))
            .chain(shims.iter().copied())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        unmount_under(&self.base);
        let _ = std::fs::remove_dir_all(&self.base);
        remove_namespace_cgroups(&self.namespace);
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes the cgroups named after the fixture's namespace, which runtimes create as the
/// parent of the containers' own (`ctr` asks for `/<namespace>/<id>`), and the containers' own
/// that a failed test left behind (their processes were just killed): in every cgroup v1
/// hierarchy, and in the v2 tree. A cgroup whose processes are still exiting is retried for a
/// moment; one still in use is not removed (rmdir refuses).
fn remove_namespace_cgroups(namespace: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let dirs: Vec<PathBuf> = std::iter::once(root.join(namespace))
        .chain(
            std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(namespace)),
        )
        .filter(|d| d.is_dir())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        for d in &dirs {
            for child in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(d);
        }
        if dirs.iter().all(|d| !d.exists()) || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // The ppid is the second field after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Pids whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}
