//! OCI hooks, run as runc runs them: each hook's path with its args and env, the container
//! state JSON on stdin, and its timeout. `createRuntime`, `createContainer` and `prestart` run
//! at Create once the tender is ready (a failure fails Create), `poststart` after Start (a
//! failure is logged), `poststop` after Delete (a failure is logged). `startContainer` hooks
//! run inside the container's namespaces in runc; a unikernel has no such process, so they
//! are refused at Create rather than silently skipped.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use oci_spec::runtime::{Hook, Spec};

/// A stage of the container's life with hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After the runtime environment exists (Create).
    CreateRuntime,
    /// After createRuntime (Create).
    CreateContainer,
    /// The legacy stage, run with createRuntime (Create).
    Prestart,
    /// After Start.
    Poststart,
    /// After Delete.
    Poststop,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::CreateRuntime => "createRuntime",
            Stage::CreateContainer => "createContainer",
            Stage::Prestart => "prestart",
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }
}

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("{stage} hook {path}: {source}")]
    Spawn {
        /// Stage.
        stage: &'static str,
        /// Hook path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It ran past its timeout.
    #[error("{stage} hook {path} did not finish within {secs} s")]
    Timeout {
        /// Stage.
        stage: &'static str,
        /// Hook path.
        path: String,
        /// The timeout.
        secs: i64,
    },
    /// It exited with an error.
    #[error("{stage} hook {path} failed with status {status}: {stderr}")]
    Failed {
        /// Stage.
        stage: &'static str,
        /// Hook path.
        path: String,
        /// Exit status.
        status: i32,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `startContainer` hooks cannot run: there is no container process to enter.
    #[error(
        "startContainer hooks run inside the container's namespaces, and a unikernel has no \
         process there to run them in: remove them from the spec"
    )]
    StartContainer,
}

fn hooks_of(spec: &Spec, stage: Stage) -> Vec<Hook> {
    let Some(h) = spec.hooks().as_ref() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let v = match stage {
        Stage::CreateRuntime => h.create_runtime(),
        Stage::CreateContainer => h.create_container(),
        Stage::Prestart => h.prestart(),
        Stage::Poststart => h.poststart(),
        Stage::Poststop => h.poststop(),
    };
    v.clone().unwrap_or_default()
}

/// Refuses specs with hooks that cannot run for a unikernel.
pub fn check(spec: &Spec) -> Result<(), HookError> {
    let has_start = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|v| !v.is_empty());
    if has_start {
        return Err(HookError::StartContainer);
    }
    Ok(())
}

/// The state JSON a hook reads on stdin.
pub fn state_json(spec: &Spec, id: &str, status: &str, pid: u32, bundle: &Path) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle.display().to_string(),
        "annotations": spec.annotations().clone().unwrap_or_default(),
    }))
    .unwrap_or_default()
}

/// Runs the hooks of `stage` in order; the first failure stops them.
pub async fn run(spec: &Spec, stage: Stage, state: &[u8]) -> Result<(), HookError> {
    for hook in hooks_of(spec, stage) {
        let path = hook.path().display().to_string();
        let mut cmd = Command::new(hook.path());
        if let Some(args) = hook.args() {
            if let Some(a0) = args.first() {
                cmd.arg0(a0);
            }
            cmd.args(args.iter().skip(1));
        }
        cmd.env_clear();
        for kv in hook.env().clone().unwrap_or_default() {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let timeout = hook
            .timeout()
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64));
        let done = crate::child::run(cmd, state.to_vec(), timeout)
            .await
            .map_err(|source| HookError::Spawn {
                stage: stage.name(),
                path: path.clone(),
                source,
            })?;
        if done.timed_out {
            return Err(HookError::Timeout {
                stage: stage.name(),
                path,
                secs: hook.timeout().unwrap_or(0),
            });
        }
        if done.status != 0 {
            return Err(HookError::Failed {
                stage: stage.name(),
                path,
                status: done.status,
                stderr: done.stderr.trim().to_string(),
            });
        }
    }
    Ok(())
}
