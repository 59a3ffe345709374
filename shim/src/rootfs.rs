//! The container's root filesystem: mounting what containerd sends onto `BUNDLE/rootfs`,
//! unmounting it, and finding the unikernel (`process.args[0]`) inside it without letting a
//! symlink or `..` lead outside.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use containerd_shim_protos::api::Mount;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{fstat, Mode, SFlag};

/// The search path used when the spec's environment sets no PATH (as runc does).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors preparing the rootfs or finding the unikernel in it.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A rootfs mount failed.
    #[error("mount {kind} rootfs on {target}: {message}")]
    Mount {
        /// Mount type.
        kind: String,
        /// Mount point.
        target: PathBuf,
        /// The cause.
        message: String,
    },
    /// The spec has no process args.
    #[error("the container spec has no process.args: name the unikernel as args[0]")]
    NoArgs,
    /// args\[0\] was not found in the image.
    #[error(
        "process.args[0] {arg:?} was not found in the image ({detail}; paths and symlinks are \
         resolved inside the container's rootfs)"
    )]
    NotFound {
        /// args\[0\].
        arg: String,
        /// What lookup failed.
        detail: String,
    },
    /// args\[0\] is not a regular file.
    #[error("process.args[0] {arg:?} is not a regular file in the image (it is a {kind})")]
    NotRegular {
        /// args\[0\].
        arg: String,
        /// What it is.
        kind: &'static str,
    },
    /// The rootfs directory could not be opened.
    #[error("open rootfs {path}: {source}")]
    OpenRoot {
        /// The rootfs directory.
        path: PathBuf,
        /// The cause.
        source: nix::Error,
    },
}

/// Mounts `mounts` (in order) on `target`; on failure, unmounts whatever was mounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), RootfsError> {
    for m in mounts {
        let kind = Some(m.type_.as_str()).filter(|s| !s.is_empty());
        let source = Some(m.source.as_str()).filter(|s| !s.is_empty());
        if let Err(e) = containerd_shim::mount::mount_rootfs(kind, source, &m.options, target) {
            unmount(target);
            return Err(RootfsError::Mount {
                kind: m.type_.clone(),
                target: target.to_path_buf(),
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (best effort, lazily).
pub fn unmount(target: &Path) {
    // Each call removes the topmost mount; EINVAL means nothing is mounted there any more.
    for _ in 0..16 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => break,
            Err(e) => {
                tracing::warn!("unmount {}: {e}", target.display());
                break;
            }
        }
    }
}

/// The unikernel found in the rootfs: an `O_PATH` descriptor on it, and the name it was
/// asked for (for messages).
#[derive(Debug)]
pub struct Executable {
    /// The file, opened `O_PATH`; the tender reopens it as `/proc/self/fd/N`.
    pub fd: OwnedFd,
    /// `process.args[0]` as written in the spec.
    pub arg0: String,
}

/// Finds `args[0]` inside `rootfs` the way an exec inside the container would: a name with
/// a `/` relative to `cwd`, a bare name on `path` (the spec's PATH). Resolution happens with
/// `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute or relative) stay in the rootfs.
pub fn resolve_executable(
    rootfs: &Path,
    args: &[String],
    cwd: &Path,
    path: Option<&str>,
) -> Result<Executable, RootfsError> {
    let arg0 = args
        .first()
        .filter(|a| !a.is_empty())
        .ok_or(RootfsError::NoArgs)?;
    let root: OwnedFd = File::open(rootfs)
        .map_err(|e| RootfsError::OpenRoot {
            path: rootfs.to_path_buf(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?
        .into();
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        vec![Path::new("/").join(cwd).join(arg0)]
    } else {
        path.unwrap_or(DEFAULT_PATH)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new("/").join(cwd).join(d).join(arg0))
            .collect()
    };
    let mut last_err = String::new();
    for candidate in &candidates {
        match open_in_root(&root, candidate) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| RootfsError::NotFound {
                    arg: arg0.clone(),
                    detail: format!("stat {}: {e}", candidate.display()),
                })?;
                let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
                if kind != SFlag::S_IFREG {
                    if kind == SFlag::S_IFDIR && candidates.len() > 1 {
                        continue;
                    }
                    return Err(RootfsError::NotRegular {
                        arg: arg0.clone(),
                        kind: kind_name(kind),
                    });
                }
                return Ok(Executable {
                    fd,
                    arg0: arg0.clone(),
                });
            }
            Err(e) => last_err = format!("{}: {}", candidate.display(), e.desc()),
        }
    }
    if candidates.len() > 1 {
        last_err = format!("not on PATH {}", path.unwrap_or(DEFAULT_PATH));
    }
    Err(RootfsError::NotFound {
        arg: arg0.clone(),
        detail: last_err,
    })
}

/// Opens `path` (absolute, meaning relative to the rootfs) with the rootfs as `/`.
fn open_in_root(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    // Normalise to a relative path; RESOLVE_IN_ROOT treats it as below `root` either way.
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(
        root.as_fd(),
        OsStr::from_bytes(rel.as_os_str().as_bytes()),
        how,
    )
}

fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFLNK => "symlink",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn args(a: &str) -> Vec<String> {
        vec![a.to_string(), "x".to_string()]
    }

    #[test]
    fn resolves_inside_the_root_only() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("hello"), b"elf").unwrap();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/tool"), b"elf").unwrap();
        symlink("/hello", r.join("abs")).unwrap();
        symlink(outside.path().join("secret"), r.join("escape")).unwrap();
        symlink("../../../../../../../../etc/passwd", r.join("dotdot")).unwrap();
        std::fs::create_dir(r.join("dir")).unwrap();

        let cwd = Path::new("/");
        assert!(resolve_executable(r, &args("/hello"), cwd, None).is_ok());
        assert!(resolve_executable(r, &args("tool"), cwd, Some("/bin")).is_ok());
        // An absolute symlink resolves inside the rootfs.
        assert!(resolve_executable(r, &args("/abs"), cwd, None).is_ok());
        // A symlink to a host path or a `..` chain does not reach the host.
        for bad in ["/escape", "/dotdot", "/../../../etc/passwd"] {
            let e = resolve_executable(r, &args(bad), cwd, None).unwrap_err();
            assert!(matches!(e, RootfsError::NotFound { .. }), "{bad}: {e}");
        }
        let e = resolve_executable(r, &args("/dir"), cwd, None).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let e = resolve_executable(r, &[], cwd, None).unwrap_err();
        assert!(matches!(e, RootfsError::NoArgs));
        let e = resolve_executable(r, &args("nothere"), cwd, None).unwrap_err();
        assert!(e.to_string().contains("nothere"), "{e}");
    }
}
