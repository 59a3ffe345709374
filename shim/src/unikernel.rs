//! A unikernel Create has checked (resolved in its rootfs, its devices described by the
//! tender), and launching its tender: devices bound, command line substituted, namespaces
//! and user applied. Create launches at once; a container whose network is configured
//! between Create and Start launches at Start ([`crate::late_network`]).

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::devices::{self, Kind};
use crate::error::{ShimError, ShimResult};
use crate::io::TenderStdio;
use crate::rootfs::Executable;
use crate::spec_map;
use crate::tender::{Launch, Tender, TenderError};
use nabla_proto::control::Ready;

/// Everything the tender's launch needs.
pub struct Unikernel {
    /// Container id.
    pub id: String,
    /// The container's spec (namespace paths are the ones the tender joins).
    pub spec: Spec,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// The mounted rootfs.
    pub rootfs: PathBuf,
    /// The tender binary.
    pub tender: PathBuf,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// The unikernel, opened inside the rootfs.
    pub exe: Executable,
    /// The devices its manifest declares, in manifest order.
    pub declared: Vec<(String, Kind)>,
    /// `process.args[1..]`, before `$(VAR)` substitution.
    pub args: Vec<String>,
    /// The container's cgroup files, for the tender to join before exec.
    pub cgroup_files: Vec<std::os::fd::OwnedFd>,
    /// Whether Delete must undo the network binding (a namespace that outlives the tender);
    /// a namespace the container made itself goes away with its last process.
    pub record_network: bool,
}

impl std::fmt::Debug for Unikernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unikernel")
            .field("id", &self.id)
            .field("arg0", &self.exe.arg0)
            .finish()
    }
}

impl Unikernel {
    /// Binds the devices and launches the tender, which reports ready and waits for Start.
    /// On error every device binding is undone (the rootfs mount is the caller's).
    pub async fn launch(self, stdio: TenderStdio) -> ShimResult<(Tender, Ready)> {
        let Unikernel {
            id,
            spec,
            bundle,
            rootfs,
            tender,
            mem_mib,
            exe,
            declared,
            args,
            cgroup_files,
            record_network,
        } = self;
        let planned = {
            let (spec, id, bundle) = (spec.clone(), id.clone(), bundle.clone());
            tokio::task::spawn_blocking(move || {
                devices::plan(
                    &spec,
                    &id,
                    &declared,
                    &bundle,
                    &rootfs,
                    crate::tender::FIRST_DEVICE_FD,
                )
            })
            .await
            .map_err(|e| ShimError::Internal(e.to_string()))?
        };
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                devices::cleanup_bundle(&bundle, &id);
                return Err(ShimError::InvalidArgument(e.to_string()));
            }
        };
        if let (Some(net), true) = (&plan.net, record_network) {
            if let Err(e) = net.save(&bundle) {
                tracing::warn!(container = %id, "saving the network record: {e}");
            }
        }
        let prepared = spec_map::substitute_args(&args, &plan.vars)
            .map_err(|e| e.to_string())
            .and_then(|guest_args| {
                crate::namespaces::plan(&spec)
                    .map(|ns| (guest_args, ns))
                    .map_err(|e| e.to_string())
            });
        let (guest_args, namespaces) = match prepared {
            Ok(p) => p,
            Err(e) => {
                devices::cleanup_bundle(&bundle, &id);
                return Err(ShimError::InvalidArgument(e));
            }
        };
        let arg0 = exe.arg0.clone();
        let launch = Launch {
            tender,
            mem_mib,
            exe,
            guest_args,
            device_args: {
                // The container's user: the tender takes it on once its devices are open.
                let u = spec
                    .process()
                    .as_ref()
                    .map(|p| p.user().clone())
                    .unwrap_or_default();
                let groups = u
                    .additional_gids()
                    .as_ref()
                    .map(|g| g.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                let mut a = vec![format!("--x-user={}:{}:{groups}", u.uid(), u.gid())];
                a.extend(plan.args);
                a
            },
            device_fds: plan.fds,
            namespaces,
            stdio,
            cgroup_files,
        };
        match Tender::spawn(launch).await {
            Ok(ready) => Ok(ready),
            Err(e) => {
                devices::cleanup_bundle(&bundle, &id);
                Err(match e {
                    TenderError::Refused(msg) => ShimError::InvalidArgument(refusal(&arg0, &msg)),
                    other => ShimError::Internal(other.to_string()),
                })
            }
        }
    }
}

/// The error shown when the tender refuses the unikernel, naming it as the image does.
pub fn refusal(arg0: &str, message: &str) -> String {
    format!("nabla-tender refused {arg0}: {message}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusals_name_the_unikernel() {
        assert_eq!(
            super::refusal("/hello", "not a Solo5 executable"),
            "nabla-tender refused /hello: not a Solo5 executable"
        );
    }
}
