//! Containers whose network namespace the runtime makes and someone else configures between
//! Create and Start: `ctr run --cni` runs CNI ADD in `/proc/<task pid>/ns/net` after Create,
//! nerdctl does the same from a `createRuntime` hook. A unikernel with NICs cannot be launched
//! at Create there (its namespace has no interface yet), so Create starts a holder
//! (`nabla-tender --x-pause`) in the new namespaces and reports it as the task; Start binds the
//! NICs to what was configured, launches the tender in the holder's namespaces and retires the
//! holder. The namespaces then live exactly as long as the tender.

use std::sync::Arc;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tokio::sync::watch;

use crate::container::Exit;
use crate::devices::Kind;
use crate::io::Console;
use crate::unikernel::Unikernel;

/// What Start needs to launch a held container's tender.
pub struct Pending {
    /// The unikernel, its spec joined to the holder's namespaces.
    pub unikernel: Unikernel,
    /// The tender's console ends.
    pub stdio: crate::io::TenderStdio,
    /// The console, copied from the tender once it runs.
    pub console: Console,
    /// Where the task's exit is recorded.
    pub exit_tx: Arc<watch::Sender<Option<Exit>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("unikernel", &self.unikernel)
            .finish()
    }
}

/// Whether a unikernel declaring `declared` needs its network configured after Create: it
/// has a NIC and the spec asks for a new network namespace (an entry without a path).
pub fn wanted(spec: &Spec, declared: &[(String, Kind)]) -> bool {
    declared.iter().any(|d| d.1 == Kind::Net)
        && namespaces(spec)
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
}

fn namespaces(spec: &Spec) -> Vec<oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
}

/// `spec` with each namespace the holder created (an entry without a path) replaced by the
/// holder's own, so that the tender joins them.
pub fn joined(spec: &Spec, holder: u32) -> Spec {
    let mut spec = spec.clone();
    let entries: Vec<_> = namespaces(&spec)
        .into_iter()
        .map(|mut n| {
            let file = match n.typ() {
                LinuxNamespaceType::Network => Some("net"),
                LinuxNamespaceType::Ipc => Some("ipc"),
                LinuxNamespaceType::Uts => Some("uts"),
                LinuxNamespaceType::Mount => Some("mnt"),
                _ => None,
            };
            if let (Some(file), None) = (file, n.path()) {
                n.set_path(Some(format!("/proc/{holder}/ns/{file}").into()));
            }
            n
        })
        .collect();
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(entries));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_nic_guests_in_new_network_namespaces_wait() {
        let nic = [("service0".to_string(), Kind::Net)];
        let disk = [("storage".to_string(), Kind::Block)];
        let new_ns = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network"},{"type":"uts"}]}}"#,
        );
        let given = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network","path":"/var/run/netns/x"}]}}"#,
        );
        assert!(wanted(&new_ns, &nic));
        assert!(!wanted(&new_ns, &disk));
        assert!(!wanted(&given, &nic));
        assert!(!wanted(&spec(r#"{"ociVersion":"1.0.2"}"#), &nic));
    }

    #[test]
    fn joined_points_new_namespaces_at_the_holder() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network"},{"type":"ipc","path":"/proc/9/ns/ipc"},{"type":"mount"},{"type":"pid"}]}}"#,
        );
        let j = joined(&s, 42);
        let paths: Vec<_> = namespaces(&j)
            .iter()
            .map(|n| n.path().as_ref().map(|p| p.display().to_string()))
            .collect();
        assert_eq!(
            paths,
            vec![
                Some("/proc/42/ns/net".into()),
                Some("/proc/9/ns/ipc".into()),
                Some("/proc/42/ns/mnt".into()),
                None
            ]
        );
    }
}
