//! Binding the devices a unikernel declares to what the container was given: block devices to
//! mounts, block devices or annotations ([`crate::spec_map`]), NICs to the interfaces of the
//! container's network namespace ([`crate::tap_redirect`]). The result is the tender's device
//! options, the tap descriptors to hand over, the `$(VAR)` values for the command line, and
//! what Delete must undo.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::spec_map::{self, BlockSource, MapError};
use crate::tap_redirect::{self, NetError};

/// The kind of a declared device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BLOCK_BASIC`.
    Block,
    /// `NET_BASIC`.
    Net,
}

/// Errors binding devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A spec rule (memory, block binding, command line).
    #[error(transparent)]
    Map(#[from] MapError),
    /// Joining the network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The guest wants a NIC but the container shares the host's network namespace.
    #[error(
        "the unikernel declares network device(s) {0} but the container has no network \
         namespace of its own (it would take over a host interface); run it with one, e.g. \
         ctr run --with-ns network:/var/run/netns/NAME, nerdctl or Kubernetes with CNI"
    )]
    HostNetwork(String),
    /// The rootfs image could not be written.
    #[error("building the rootfs image for block device '{name}': {source}")]
    RootfsImage {
        /// Device name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Parses what `nabla-tender --x-describe` prints: one `NAME KIND` line per declared device,
/// in manifest order.
pub fn parse_describe(stdout: &str) -> Vec<(String, Kind)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            let kind = match kind {
                "BLOCK_BASIC" => Kind::Block,
                "NET_BASIC" => Kind::Net,
                _ => return None,
            };
            Some((name.to_string(), kind))
        })
        .collect()
}

/// What the container's network is, for Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRecord {
    /// The namespace.
    pub netns: PathBuf,
    /// Interfaces that got a redirect.
    pub ifaces: Vec<String>,
}

/// The devices of one container, ready for the tender.
#[derive(Debug, Default)]
pub struct DevicePlan {
    /// Tender options (`--block...`, `--net...`), with `@FD` numbers from `first_fd` on.
    pub args: Vec<String>,
    /// Tap descriptors, to be given to the tender as `first_fd`, `first_fd + 1`, ...
    pub fds: Vec<OwnedFd>,
    /// `$(VAR)` values for the command line.
    pub vars: BTreeMap<String, String>,
    /// What Delete undoes.
    pub net: Option<NetRecord>,
}

/// The network namespace path of the spec, if the container has its own.
fn netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone())
}

/// Binds `declared` for container `id`; `first_fd` is where the tap fds will land in the
/// tender. On error nothing is left behind.
pub fn plan(
    spec: &Spec,
    id: &str,
    declared: &[(String, Kind)],
    bundle: &Path,
    rootfs: &Path,
    first_fd: i32,
) -> Result<DevicePlan, DeviceError> {
    let mut p = DevicePlan::default();
    p.vars.insert("NABLA_CONTAINER_ID".into(), id.to_string());
    let blocks: Vec<String> = declared
        .iter()
        .filter(|d| d.1 == Kind::Block)
        .map(|d| d.0.clone())
        .collect();
    let nets: Vec<String> = declared
        .iter()
        .filter(|d| d.1 == Kind::Net)
        .map(|d| d.0.clone())
        .collect();

    for b in spec_map::bind_block_devices(spec, &blocks, Path::new("/sys"))? {
        if let Some(n) = b.sector_size {
            p.args.push(format!("--block-sector-size:{}={n}", b.name));
        }
        let (path, readonly) = match b.source {
            BlockSource::Path { path, readonly } => (path, readonly),
            BlockSource::RootfsImage => {
                let img = bundle.join(format!("nabla-rootfs-{}.tar", b.name));
                write_rootfs_image(rootfs, &img).map_err(|source| DeviceError::RootfsImage {
                    name: b.name.clone(),
                    source,
                })?;
                (img, true)
            }
        };
        if readonly {
            p.args.push(format!("--x-block-readonly:{}", b.name));
        }
        p.args
            .push(format!("--block:{}={}", b.name, path.display()));
    }

    if !nets.is_empty() {
        let Some(ns) = netns_path(spec) else {
            return Err(DeviceError::HostNetwork(
                nets.iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        };
        if same_namespace(&ns, Path::new("/proc/self/ns/net")) {
            return Err(DeviceError::HostNetwork(
                nets.iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let nics = tap_redirect::attach(&ns, id, nets.len())?;
        let mut ifaces = Vec::new();
        for (i, (name, nic)) in nets.iter().zip(nics).enumerate() {
            let mac = nic.mac_string();
            tracing::info!(
                container = %id,
                tap = %nic.tap_name,
                iface = %nic.iface,
                ipv4 = %format!("{}/{}", nic.ipv4.0, nic.ipv4.1),
                "guest NIC {name} joined to {}", nic.iface
            );
            p.args
                .push(format!("--net:{name}=@{}", first_fd + i as i32));
            p.args.push(format!("--net-mac:{name}={mac}"));
            spec_map::net_vars(&mut p.vars, i, nic.ipv4, nic.gateway, &mac, nic.mtu);
            ifaces.push(nic.iface.clone());
            p.fds.push(nic.tap);
        }
        p.net = Some(NetRecord { netns: ns, ifaces });
    }
    Ok(p)
}

/// Whether two namespace files name the same namespace (same device and inode). The shim runs
/// in the host's network namespace: joining a guest to one of its interfaces would take the
/// host's own NIC away from it, whatever path led there.
fn same_namespace(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Undoes the network part of a plan (idempotent; a vanished namespace is fine).
pub fn cleanup(id: &str, net: &NetRecord) -> Result<(), DeviceError> {
    Ok(tap_redirect::detach(&net.netns, id, &net.ifaces)?)
}

/// Writes the container's root filesystem as a tar archive (the format MirageOS and other
/// unikernels read as a key-value store), padded to whole 4096-byte blocks so that it works
/// with either sector size.
pub fn write_rootfs_image(rootfs: &Path, out: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(".", rootfs)?;
    let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    let len = file.metadata()?.len();
    file.set_len(len.div_ceil(4096).max(1) * 4096)?;
    Ok(())
}

/// Where a container's network record is kept, so that Delete (and containerd's `delete`
/// action after a shim crash) can undo it from the bundle alone.
const NET_RECORD: &str = "nabla-net";

impl NetRecord {
    /// Saves the record in `bundle`.
    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let mut s = format!("{}\n", self.netns.display());
        for i in &self.ifaces {
            s += &format!("{i}\n");
        }
        std::fs::write(bundle.join(NET_RECORD), s)
    }

    /// Loads the record from `bundle`, if there is one.
    pub fn load(bundle: &Path) -> Option<NetRecord> {
        let s = std::fs::read_to_string(bundle.join(NET_RECORD)).ok()?;
        let mut lines = s.lines();
        let netns = PathBuf::from(lines.next()?);
        Some(NetRecord {
            netns,
            ifaces: lines.map(str::to_string).collect(),
        })
    }
}

/// Undoes everything device binding made for container `id` of `bundle`: the interfaces'
/// redirects (and a tap that outlived its tender), the record, rootfs images. Idempotent.
pub fn cleanup_bundle(bundle: &Path, id: &str) {
    if let Some(rec) = NetRecord::load(bundle) {
        if let Err(e) = cleanup(id, &rec) {
            tracing::warn!(container = %id, "network cleanup: {e}");
        }
        let _ = std::fs::remove_file(bundle.join(NET_RECORD));
    }
    if let Ok(dir) = std::fs::read_dir(bundle) {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("nabla-rootfs-") && name.ends_with(".tar") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
