//! Short-lived helper processes (the tender's `--x-describe`, OCI hooks) run to completion:
//! input on stdin, output collected, an optional deadline, and the exit status taken from the
//! containerd-shim crate's exit monitor, whose reaper owns every child of the shim (waiting on
//! a child directly would race it).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim::asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe};
use containerd_shim::monitor::Topic;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::tender::Waiter;

/// How a helper process ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code, or 128 + signal.
    pub status: i32,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Whether it was killed for running past the deadline.
    pub timed_out: bool,
}

/// Runs `cmd` with `input` on stdin until it exits (or `timeout` passes, then kills it).
pub async fn run(
    mut cmd: Command,
    input: Vec<u8>,
    timeout: Option<Duration>,
) -> std::io::Result<Finished> {
    let sub = monitor_subscribe(Topic::Pid)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Its own process group, so that a deadline ends whatever it started too (whose open
    // pipes would otherwise keep the output from ending).
    let spawned = cmd
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = monitor_unsubscribe(sub.id).await;
            return Err(e);
        }
    };
    let pid = child.id();
    let (stdin, out, err) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // Dropping a std Child neither waits nor kills: the crate's reaper reaps it.
    drop(child);
    let io = tokio::task::spawn_blocking(move || {
        if let Some(mut s) = stdin {
            // A child that does not read its input is not an error.
            let _ = s.write_all(&input);
        }
        let read = |r: Option<&mut dyn Read>| {
            let mut v = String::new();
            if let Some(r) = r {
                let _ = r.read_to_string(&mut v);
            }
            v
        };
        let (mut out, mut err) = (out, err);
        let o = read(out.as_mut().map(|r| r as &mut dyn Read));
        let e = read(err.as_mut().map(|r| r as &mut dyn Read));
        (o, e)
    });
    let waiter = Waiter::new(pid, sub);
    let mut timed_out = false;
    let status = match timeout {
        None => waiter.wait().await,
        Some(t) => {
            let wait = waiter.wait();
            tokio::pin!(wait);
            match tokio::time::timeout(t, &mut wait).await {
                Ok(s) => s,
                Err(_) => {
                    timed_out = true;
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    wait.await
                }
            }
        }
    };
    let (stdout, stderr) = io.await.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Finished {
        status,
        stdout,
        stderr,
        timed_out,
    })
}
