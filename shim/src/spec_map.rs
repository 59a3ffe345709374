//! What an OCI spec means for a unikernel: how much guest memory, which command line, and
//! where each block device the manifest declares comes from. Pure functions over the spec, so
//! the rules (documented in the README, "Image and spec conventions") are tested one by one.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;

/// Annotation overriding the guest memory, in MiB.
pub const MEMORY_ANNOTATION: &str = "nabla.io/memory";
/// Annotation prefix binding a block device to a host path: `nabla.io/block.NAME=PATH[:ro]`.
pub const BLOCK_ANNOTATION_PREFIX: &str = "nabla.io/block.";
/// Annotation prefix setting a block device's sector size: `nabla.io/block-sector-size.NAME=N`.
pub const SECTOR_ANNOTATION_PREFIX: &str = "nabla.io/block-sector-size.";
/// Annotation naming the block device that receives the container's rootfs as a tar image.
pub const ROOTFS_BLOCK_ANNOTATION: &str = "nabla.io/rootfs-block";
/// Memory kept out of the guest's share of a cgroup limit, for the tender itself (its page
/// tables, stack, the loaded image's page cache) so that the tender never hits the limit.
pub const TENDER_HEADROOM_MIB: u64 = 16;
/// The smallest guest the shim will start.
pub const MIN_GUEST_MIB: u64 = 2;
/// Solo5's command-line limit.
pub const CMDLINE_MAX: usize = 8191;

/// A spec that cannot be mapped onto a unikernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// `nabla.io/memory` is not a positive number of MiB.
    #[error("annotation {MEMORY_ANNOTATION}={0:?} is not a number of MiB (e.g. \"64\")")]
    BadMemoryAnnotation(String),
    /// The memory limit leaves too little for a guest.
    #[error(
        "memory limit {limit} bytes is too small for a unikernel: the guest needs at least \
         {MIN_GUEST_MIB} MiB plus {TENDER_HEADROOM_MIB} MiB for the tender"
    )]
    LimitTooSmall {
        /// linux.resources.memory.limit.
        limit: i64,
    },
    /// The joined command line is over Solo5's limit.
    #[error("the guest command line is {len} characters; Solo5 allows at most {CMDLINE_MAX}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
    },
    /// Declared block devices without a source.
    #[error(
        "the unikernel declares block device(s) {} with nothing bound to them; bind each with a \
         mount whose destination is /NAME (ctr run --mount type=bind,src=disk.img,dst=/NAME), a \
         block device at /dev/NAME (Kubernetes volumeDevices), or the annotation \
         {BLOCK_ANNOTATION_PREFIX}NAME=/path/on/host",
        .0.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
    )]
    UnboundBlock(Vec<String>),
    /// A block source is not a regular file or a block device.
    #[error("block device '{name}': {path} is {what}, not a regular file or a block device")]
    BadBlockSource {
        /// Device name.
        name: String,
        /// Host path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A block source could not be examined.
    #[error("block device '{name}': {path}: {reason}")]
    BlockSourceUnreadable {
        /// Device name.
        name: String,
        /// Host path.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// A `linux.devices` block device whose host node could not be found.
    #[error(
        "block device '{name}': no host device {major}:{minor} (/sys/dev/block/{major}:{minor})"
    )]
    NoHostDevice {
        /// Device name.
        name: String,
        /// Major number.
        major: i64,
        /// Minor number.
        minor: i64,
    },
    /// A sector-size annotation that is not a number.
    #[error("annotation {SECTOR_ANNOTATION_PREFIX}{name}={value:?} is not a number of bytes")]
    BadSectorSize {
        /// Device name.
        name: String,
        /// The value.
        value: String,
    },
    /// The rootfs block annotation names a device the unikernel does not declare.
    #[error("annotation {ROOTFS_BLOCK_ANNOTATION}={0:?}: the unikernel declares no block device of that name")]
    RootfsBlockUndeclared(String),
}

/// Guest memory in MiB: the annotation if set; else the cgroup memory limit minus
/// [`TENDER_HEADROOM_MIB`]; else `default_mib`. A limit that leaves
/// less than [`MIN_GUEST_MIB`] is an error.
pub fn guest_memory_mib(spec: &Spec, default_mib: u64) -> Result<u64, MapError> {
    if let Some(v) = annotation(spec, MEMORY_ANNOTATION) {
        return v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| MapError::BadMemoryAnnotation(v.to_string()));
    }
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0);
    match limit {
        None => Ok(default_mib),
        Some(limit) => {
            let mib = (limit as u64) >> 20;
            mib.checked_sub(TENDER_HEADROOM_MIB)
                .filter(|g| *g >= MIN_GUEST_MIB)
                .ok_or(MapError::LimitTooSmall { limit })
        }
    }
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Substitutes `$(NAME)` in each of `args` (`process.args[1..]`) from `vars` as Kubernetes
/// does: `$$(NAME)` stays a literal `$(NAME)`, and an unknown `$(NAME)` is left as it is. The
/// arguments stay apart (the tender joins them with spaces); the joined line must fit Solo5's
/// limit.
pub fn substitute_args(
    args: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, MapError> {
    let out: Vec<String> = args.iter().map(|a| substitute(a, vars)).collect();
    let len = out.iter().map(String::len).sum::<usize>() + out.len().saturating_sub(1);
    if len > CMDLINE_MAX {
        return Err(MapError::CmdlineTooLong { len });
    }
    Ok(out)
}

fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("$(") {
            // `$$(` escapes: keep one `$` and the parenthesis.
            out.push_str("$(");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) if vars.contains_key(&tail[..end]) => {
                    out.push_str(&vars[&tail[..end]]);
                    rest = &tail[end + 1..];
                }
                _ => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Where a block device's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockSource {
    /// A host file or block device.
    Path {
        /// Host path.
        path: PathBuf,
        /// Opened read-only.
        readonly: bool,
    },
    /// A tar image of the container's rootfs, built by the shim (read-only).
    RootfsImage,
}

/// A declared block device and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBinding {
    /// Manifest name.
    pub name: String,
    /// The source.
    pub source: BlockSource,
    /// Sector size, if the annotation sets one.
    pub sector_size: Option<u32>,
}

/// Binds every declared block device, first match wins:
/// 1. the annotation `nabla.io/block.NAME=PATH[:ro]`;
/// 2. a mount whose destination is `/NAME` (read-only if its options say `ro`);
/// 3. a `linux.devices` block device at `/dev/NAME` (the host node found by major:minor);
/// 4. the annotation `nabla.io/rootfs-block=NAME` (the rootfs as a tar image).
///
/// Devices left unbound are one error naming them all.
pub fn bind_block_devices(
    spec: &Spec,
    declared: &[String],
    sys_root: &Path,
) -> Result<Vec<BlockBinding>, MapError> {
    let rootfs_dev = annotation(spec, ROOTFS_BLOCK_ANNOTATION).map(str::to_string);
    if let Some(r) = &rootfs_dev {
        if !declared.contains(r) {
            return Err(MapError::RootfsBlockUndeclared(r.clone()));
        }
    }
    let mut out = Vec::new();
    let mut unbound = Vec::new();
    for name in declared {
        let sector_size = match annotation(spec, &format!("{SECTOR_ANNOTATION_PREFIX}{name}")) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| MapError::BadSectorSize {
                        name: name.clone(),
                        value: v.to_string(),
                    })?,
            ),
        };
        let source = if let Some(v) = annotation(spec, &format!("{BLOCK_ANNOTATION_PREFIX}{name}"))
        {
            let (path, readonly) = match v.strip_suffix(":ro") {
                Some(p) => (p, true),
                None => (v.strip_suffix(":rw").unwrap_or(v), false),
            };
            Some(BlockSource::Path {
                path: PathBuf::from(path),
                readonly,
            })
        } else if let Some(m) = mount_for(spec, name) {
            Some(m)
        } else if let Some(d) = device_for(spec, name, sys_root)? {
            Some(d)
        } else if rootfs_dev.as_deref() == Some(name.as_str()) {
            Some(BlockSource::RootfsImage)
        } else {
            None
        };
        match source {
            Some(source) => {
                if let BlockSource::Path { path, .. } = &source {
                    check_block_source(name, path)?;
                }
                out.push(BlockBinding {
                    name: name.clone(),
                    source,
                    sector_size,
                });
            }
            None => unbound.push(name.clone()),
        }
    }
    if !unbound.is_empty() {
        return Err(MapError::UnboundBlock(unbound));
    }
    Ok(out)
}

/// `/NAME`, `/NAME/`, `//NAME` all name device NAME; nothing deeper does.
fn destination_names(dest: &Path, name: &str) -> bool {
    let parts: Vec<_> = dest
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    dest.is_absolute() && parts.len() == 1 && parts[0].as_os_str() == name
}

fn mount_for(spec: &Spec, name: &str) -> Option<BlockSource> {
    let m = spec
        .mounts()
        .as_ref()?
        .iter()
        .find(|m| destination_names(m.destination(), name))?;
    let source = m.source().as_ref()?;
    let readonly = m
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "ro"));
    Some(BlockSource::Path {
        path: source.clone(),
        readonly,
    })
}

fn device_for(spec: &Spec, name: &str, sys_root: &Path) -> Result<Option<BlockSource>, MapError> {
    let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) else {
        return Ok(None);
    };
    let want = PathBuf::from("/dev").join(name);
    let Some(d) = devs
        .iter()
        .find(|d| d.path() == &want && d.typ() == oci_spec::runtime::LinuxDeviceType::B)
    else {
        return Ok(None);
    };
    let (major, minor) = (d.major(), d.minor());
    let uevent = sys_root.join(format!("dev/block/{major}:{minor}/uevent"));
    let devname = std::fs::read_to_string(&uevent).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))
            .map(str::to_string)
    });
    let Some(devname) = devname else {
        return Err(MapError::NoHostDevice {
            name: name.to_string(),
            major,
            minor,
        });
    };
    // The device cgroup rule the runtime was given says whether the container may write.
    let readonly = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().as_ref())
        .and_then(|rules| {
            rules.iter().rev().find(|r| {
                r.allow()
                    && r.major() == Some(major)
                    && r.minor() == Some(minor)
                    && r.typ() == Some(oci_spec::runtime::LinuxDeviceType::B)
            })
        })
        .and_then(|r| r.access().as_ref())
        .is_some_and(|a| !a.contains('w'));
    Ok(Some(BlockSource::Path {
        path: PathBuf::from("/dev").join(devname),
        readonly,
    }))
}

fn check_block_source(name: &str, path: &Path) -> Result<(), MapError> {
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::metadata(path).map_err(|e| MapError::BlockSourceUnreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let ft = md.file_type();
    let what = if ft.is_file() || ft.is_block_device() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(MapError::BadBlockSource {
        name: name.to_string(),
        path: path.to_path_buf(),
        what,
    })
}

/// The `$(VAR)` values a guest can use in its arguments, for NIC `i` (suffix `_i` for i ≥ 1).
pub fn net_vars(
    vars: &mut BTreeMap<String, String>,
    i: usize,
    ipv4: (std::net::Ipv4Addr, u8),
    gateway: Option<std::net::Ipv4Addr>,
    mac: &str,
    mtu: u32,
) {
    let sfx = if i == 0 {
        String::new()
    } else {
        format!("_{i}")
    };
    let (ip, prefix) = ipv4;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    vars.insert(format!("NABLA_IPV4{sfx}"), format!("{ip}/{prefix}"));
    vars.insert(format!("NABLA_IP{sfx}"), ip.to_string());
    vars.insert(format!("NABLA_PREFIX_LEN{sfx}"), prefix.to_string());
    vars.insert(
        format!("NABLA_NETMASK{sfx}"),
        std::net::Ipv4Addr::from(mask).to_string(),
    );
    if let Some(g) = gateway {
        vars.insert(format!("NABLA_GATEWAY{sfx}"), g.to_string());
    }
    vars.insert(format!("NABLA_MAC{sfx}"), mac.to_string());
    vars.insert(format!("NABLA_MTU{sfx}"), mtu.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn vars() -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        net_vars(
            &mut v,
            0,
            ("10.1.2.3".parse().unwrap(), 24),
            Some("10.1.2.1".parse().unwrap()),
            "02:00:00:00:00:01",
            1500,
        );
        v.insert("NABLA_CONTAINER_ID".into(), "c1".into());
        v
    }

    #[test]
    fn memory_rules() {
        let s = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(guest_memory_mib(&s, 512), Ok(512));
        let s =
            spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":134217728}}}}"#);
        assert_eq!(guest_memory_mib(&s, 512), Ok(128 - TENDER_HEADROOM_MIB));
        assert_eq!(
            guest_memory_mib(&s, 64),
            Ok(128 - TENDER_HEADROOM_MIB),
            "the limit wins over the default"
        );
        let s =
            spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":4294967296}}}}"#);
        assert_eq!(guest_memory_mib(&s, 512), Ok(4096 - TENDER_HEADROOM_MIB));
        let s = spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":-1}}}}"#);
        assert_eq!(guest_memory_mib(&s, 64), Ok(64), "no limit");
        let s =
            spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":8388608}}}}"#);
        assert!(matches!(
            guest_memory_mib(&s, 512),
            Err(MapError::LimitTooSmall { .. })
        ));
        let s = spec(
            r#"{"ociVersion":"1.0.2","annotations":{"nabla.io/memory":"64"},"linux":{"resources":{"memory":{"limit":8388608}}}}"#,
        );
        assert_eq!(guest_memory_mib(&s, 512), Ok(64));
        let s = spec(r#"{"ociVersion":"1.0.2","annotations":{"nabla.io/memory":"64M"}}"#);
        assert!(matches!(
            guest_memory_mib(&s, 512),
            Err(MapError::BadMemoryAnnotation(_))
        ));
    }

    #[test]
    fn cmdline_substitution_like_kubernetes() {
        let v = vars();
        let args: Vec<String> = [
            "--ip=$(NABLA_IPV4)",
            "gw=$(NABLA_GATEWAY)",
            "$$(NABLA_IP)",
            "$(UNKNOWN)",
            "a$b",
            "$(NABLA_CONTAINER_ID)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            substitute_args(&args, &v).unwrap().join(" "),
            "--ip=10.1.2.3/24 gw=10.1.2.1 $(NABLA_IP) $(UNKNOWN) a$b c1"
        );
        assert_eq!(v["NABLA_NETMASK"], "255.255.255.0");
        let long = vec!["x".repeat(CMDLINE_MAX + 1)];
        assert_eq!(
            substitute_args(&long, &v),
            Err(MapError::CmdlineTooLong {
                len: CMDLINE_MAX + 1
            })
        );
    }

    #[test]
    fn block_binding_order_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let json = format!(
            r#"{{"ociVersion":"1.0.2",
                "annotations":{{"nabla.io/block.a":"{0}:ro","nabla.io/block-sector-size.b":"4096","nabla.io/rootfs-block":"c"}},
                "mounts":[{{"destination":"/b","source":"{0}","type":"bind","options":["rbind","ro"]}},
                          {{"destination":"/a","source":"/nonexistent","type":"bind"}}]}}"#,
            img.display()
        );
        let s = spec(&json);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let b = bind_block_devices(&s, &names, Path::new("/sys")).unwrap();
        assert_eq!(
            b[0].source,
            BlockSource::Path {
                path: img.clone(),
                readonly: true
            }
        );
        assert_eq!(
            b[1].source,
            BlockSource::Path {
                path: img.clone(),
                readonly: true
            }
        );
        assert_eq!(b[1].sector_size, Some(4096));
        assert_eq!(b[2].source, BlockSource::RootfsImage);

        let names: Vec<String> = ["x", "y"].iter().map(|s| s.to_string()).collect();
        let e = bind_block_devices(
            &spec(r#"{"ociVersion":"1.0.2"}"#),
            &names,
            Path::new("/sys"),
        )
        .unwrap_err();
        assert_eq!(e, MapError::UnboundBlock(names.clone()));
        assert!(e.to_string().contains("'x', 'y'"), "{e}");

        let json = format!(
            r#"{{"ociVersion":"1.0.2","mounts":[{{"destination":"/x","source":"{}","type":"bind"}}]}}"#,
            dir.path().display()
        );
        let e = bind_block_devices(&spec(&json), &names[..1], Path::new("/sys")).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let json = r#"{"ociVersion":"1.0.2","mounts":[{"destination":"/x","source":"/dev/null","type":"bind"}]}"#;
        let e = bind_block_devices(&spec(json), &names[..1], Path::new("/sys")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
    }

    #[test]
    fn destinations() {
        assert!(destination_names(Path::new("/storage"), "storage"));
        assert!(destination_names(Path::new("/storage/"), "storage"));
        assert!(!destination_names(Path::new("/data/storage"), "storage"));
        assert!(!destination_names(Path::new("storage"), "storage"));
    }
}
