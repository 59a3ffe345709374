//! The container's console: the tender's stdout and stderr are pipes the shim reads and
//! copies to where containerd asked (a FIFO path, `file://PATH`, or `binary://PATH?args`, as
//! nerdctl and others use). There is no stdin: a unikernel has none, so the stdin FIFO is
//! never opened, and the tender gets `/dev/null`.
//!
//! Backpressure: each stream is copied with one fixed 32 KiB buffer. When the destination
//! stops taking bytes (a reader that stopped reading, a slow logger) the copy waits, the pipe
//! fills (64 KiB), and the guest's console `write` blocks until the reader catches up. The
//! shim's memory never grows with unread output. For a FIFO, the shim also holds a read end
//! of its own, so a restarting containerd (no reader for a moment) does not break the copy:
//! the FIFO buffer fills and the guest waits.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::spawn::map_fds;

/// How long a `binary://` logger may take to signal readiness.
const LOGGER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the copy buffer of each stream.
const COPY_BUFFER: usize = 32 * 1024;

/// Errors setting up the console.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// `terminal: true` was asked for.
    #[error(
        "a terminal (tty) is not supported for unikernels: the guest's console is a byte \
         stream; run without -t/--tty"
    )]
    Terminal,
    /// A destination could not be opened.
    #[error("open {what} {path}: {source}")]
    Open {
        /// stdout or stderr.
        what: &'static str,
        /// The path or URI.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A URI scheme the shim does not know.
    #[error("unsupported {what} URI {uri:?}: use a FIFO path, file:// or binary://")]
    Scheme {
        /// stdout or stderr.
        what: &'static str,
        /// The URI.
        uri: String,
    },
    /// The binary logger failed to start or to become ready.
    #[error("binary logger {path}: {message}")]
    Logger {
        /// The logger binary.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A pipe could not be made.
    #[error("console pipe: {0}")]
    Pipe(std::io::Error),
}

/// Where one output stream goes.
enum Sink {
    /// Nowhere (no path given, or the destination failed): read and dropped.
    Discard,
    /// A FIFO, with a read end the shim holds so writers never see EPIPE.
    Fifo { tx: pipe::Sender, _hold: File },
    /// A regular file, appended to.
    File(tokio::fs::File),
    /// A pipe to a binary logger.
    Pipe(pipe::Sender),
}

impl Sink {
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Fifo { tx, .. } => tx.write_all(buf).await,
            Sink::File(f) => f.write_all(buf).await,
            Sink::Pipe(p) => p.write_all(buf).await,
        }
    }

    async fn flush(&mut self) {
        if let Sink::File(f) = self {
            let _ = f.flush().await;
        }
    }
}

/// The tender's ends of the console pipes.
#[derive(Debug)]
pub struct TenderStdio {
    /// The tender's stdout (the guest console).
    pub stdout: OwnedFd,
    /// The tender's stderr (its diagnostics).
    pub stderr: OwnedFd,
}

impl TenderStdio {
    /// Both on `/dev/null`, for a holder that says nothing.
    pub fn null() -> std::io::Result<TenderStdio> {
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
        };
        Ok(TenderStdio {
            stdout: open()?,
            stderr: open()?,
        })
    }
}

/// The copy tasks of one container.
///
/// The tender's stderr is held back until [`Console::open_stderr`] (at Start): what the
/// tender says while refusing a Create comes back as the Create error instead, so it is
/// dropped rather than printed twice.
pub struct Console {
    tasks: Vec<JoinHandle<()>>,
    stderr_gate: Option<StderrGate>,
}

/// Opens the tender's stderr to its destination; dropped unopened, the stderr is discarded.
#[derive(Debug)]
pub struct StderrGate(oneshot::Sender<()>);

impl StderrGate {
    /// Lets stderr through.
    pub fn open(self) {
        let _ = self.0.send(());
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// The requested stdio of a container.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    /// stdin FIFO (unused).
    pub stdin: String,
    /// stdout destination.
    pub stdout: String,
    /// stderr destination.
    pub stderr: String,
    /// Whether a tty was asked for.
    pub terminal: bool,
}

/// A parsed output destination.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    None,
    Path(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

fn parse_target(what: &'static str, uri: &str) -> Result<Target, IoError> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(Target::Path(PathBuf::from(uri)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = PathBuf::from(percent_decode(path));
    match scheme {
        "fifo" => Ok(Target::Path(path)),
        "file" => Ok(Target::File(path)),
        "binary" => {
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(k));
                if !v.is_empty() {
                    args.push(percent_decode(v));
                }
            }
            Ok(Target::Binary { path, args })
        }
        _ => Err(IoError::Scheme {
            what,
            uri: uri.to_string(),
        }),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn open_path(what: &'static str, path: &Path) -> Result<Sink, IoError> {
    let err = |source| IoError::Open {
        what,
        path: path.display().to_string(),
        source,
    };
    let is_fifo = std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if is_fifo {
        let hold = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(err)?;
        let tx = pipe::OpenOptions::new().open_sender(path).map_err(err)?;
        Ok(Sink::Fifo { tx, _hold: hold })
    } else {
        open_file(what, path)
    }
}

fn open_file(what: &'static str, path: &Path) -> Result<Sink, IoError> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| IoError::Open {
            what,
            path: path.display().to_string(),
            source,
        })?;
    Ok(Sink::File(tokio::fs::File::from_std(f)))
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), IoError> {
    let (r, w) = std::io::pipe().map_err(IoError::Pipe)?;
    Ok((OwnedFd::from(r), OwnedFd::from(w)))
}

fn sender(fd: OwnedFd) -> Result<pipe::Sender, IoError> {
    pipe::Sender::from_owned_fd(fd).map_err(IoError::Pipe)
}

/// Starts a `binary://` logger: stdout on its fd 3, stderr on fd 4, and readiness on fd 5
/// (one byte, or EOF), with `CONTAINER_ID` and `CONTAINER_NAMESPACE` set, as containerd's
/// own shims do. Returns the senders for stdout and stderr.
async fn start_logger(
    path: &Path,
    args: &[String],
    id: &str,
    namespace: &str,
) -> Result<(Sink, Sink), IoError> {
    let fail = |message: String| IoError::Logger {
        path: path.display().to_string(),
        message,
    };
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (ready_r, ready_w) = pipe_pair()?;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let keep = map_fds(&mut cmd, &[(&out_r, 3), (&err_r, 4), (&ready_w, 5)])
        .map_err(|e| fail(e.to_string()))?;
    // The logger is reaped by the shim's reaper like any child; its exit needs no action.
    let child = cmd.spawn().map_err(|e| fail(format!("start: {e}")))?;
    // Only the logger may keep these ends, or its EOFs (readiness, then end of output)
    // would never come.
    drop(cmd);
    drop((keep, out_r, err_r, ready_w));
    let pid = child.id();
    drop(child);
    let mut ready = pipe::Receiver::from_owned_fd(ready_r).map_err(IoError::Pipe)?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(LOGGER_READY_TIMEOUT, ready.read(&mut byte)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(fail(format!("readiness pipe: {e}"))),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(fail(format!(
                "not ready within {} s",
                LOGGER_READY_TIMEOUT.as_secs()
            )));
        }
    }
    Ok((Sink::Pipe(sender(out_w)?), Sink::Pipe(sender(err_w)?)))
}

impl Console {
    /// Opens the destinations in `stdio` and starts copying from two new pipes, whose
    /// write ends are returned for the tender.
    pub async fn open(
        stdio: &StdioPaths,
        id: &str,
        namespace: &str,
    ) -> Result<(Console, TenderStdio), IoError> {
        if stdio.terminal {
            return Err(IoError::Terminal);
        }
        let out = parse_target("stdout", &stdio.stdout)?;
        let err = parse_target("stderr", &stdio.stderr)?;
        let (out_sink, err_sink) = match (&out, &err) {
            (Target::Binary { path, args }, _) => {
                let (o, e) = start_logger(path, args, id, namespace).await?;
                let e = if out == err {
                    e
                } else {
                    sink_for("stderr", &err)?
                };
                (o, e)
            }
            (_, Target::Binary { path, args }) => {
                let (_, e) = start_logger(path, args, id, namespace).await?;
                (sink_for("stdout", &out)?, e)
            }
            _ => (sink_for("stdout", &out)?, sink_for("stderr", &err)?),
        };
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let out_r = pipe::Receiver::from_owned_fd(out_r).map_err(IoError::Pipe)?;
        let err_r = pipe::Receiver::from_owned_fd(err_r).map_err(IoError::Pipe)?;
        let (gate_tx, gate_rx) = oneshot::channel();
        let err_id = id.to_string();
        let tasks = vec![
            tokio::spawn(pump(out_r, out_sink, "stdout", id.to_string())),
            tokio::spawn(async move {
                let sink = match gate_rx.await {
                    Ok(()) => err_sink,
                    Err(_) => Sink::Discard,
                };
                pump(err_r, sink, "stderr", err_id).await
            }),
        ];
        Ok((
            Console {
                tasks,
                stderr_gate: Some(StderrGate(gate_tx)),
            },
            TenderStdio {
                stdout: out_w,
                stderr: err_w,
            },
        ))
    }

    /// Takes the gate of the tender's stderr, to open at Start.
    pub fn stderr_gate(&mut self) -> Option<StderrGate> {
        self.stderr_gate.take()
    }

    /// Waits until both streams reached EOF (the tender is gone) and every byte was handed
    /// on, for at most `limit`; then stops copying.
    pub async fn drain(&mut self, limit: Duration) {
        // A tender that never started has nothing to say on stderr that Create did not.
        self.stderr_gate = None;
        let deadline = tokio::time::Instant::now() + limit;
        for t in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *t).await.is_err() {
                tracing::warn!(
                    "console output not drained within {} s (reader not reading?); dropping the rest",
                    limit.as_secs()
                );
                t.abort();
            }
        }
        self.tasks.clear();
    }

    /// Stops copying at once.
    pub fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

fn sink_for(what: &'static str, target: &Target) -> Result<Sink, IoError> {
    match target {
        Target::None => Ok(Sink::Discard),
        Target::Path(p) => open_path(what, p),
        Target::File(p) => open_file(what, p),
        Target::Binary { .. } => Ok(Sink::Discard),
    }
}

/// Copies `from` to `to` until EOF. A failing destination is dropped (logged) and the rest
/// of the stream is read and discarded, so the guest is never stuck on a dead reader.
async fn pump(mut from: pipe::Receiver, mut to: Sink, what: &'static str, id: String) {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut first = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(container = %id, "{what}: read console pipe: {e}");
                break;
            }
        };
        if first {
            first = false;
            tracing::info!(container = %id, "first {what} output from the guest");
        }
        if let Err(e) = to.write_all(&buf[..n]).await {
            tracing::warn!(container = %id, "{what}: destination failed ({e}); discarding further output");
            to = Sink::Discard;
        }
    }
    to.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("stdout", "").unwrap(), Target::None);
        assert_eq!(
            parse_target("stdout", "/run/x/stdout").unwrap(),
            Target::Path("/run/x/stdout".into())
        );
        assert_eq!(
            parse_target("stdout", "file:///var/log/a%20b.log").unwrap(),
            Target::File("/var/log/a b.log".into())
        );
        assert_eq!(
            parse_target("stdout", "binary:///usr/bin/logger?tag=x&debug").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["tag".into(), "x".into(), "debug".into()]
            }
        );
        assert!(parse_target("stdout", "http://x").is_err());
    }

    #[tokio::test]
    async fn file_sink_gets_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let stdio = StdioPaths {
            stdout: format!("file://{}", log.display()),
            stderr: format!("file://{}", log.display()),
            ..Default::default()
        };
        let (mut console, tender) = Console::open(&stdio, "c", "ns").await.unwrap();
        console.stderr_gate().unwrap().open();
        let mut w = File::from(tender.stdout);
        drop(tender.stderr);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            w.write_all(&data).unwrap();
            data
        });
        let data = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        console.drain(Duration::from_secs(5)).await;
        assert_eq!(std::fs::read(&log).unwrap(), data);
    }

    #[tokio::test]
    async fn terminal_is_refused() {
        let stdio = StdioPaths {
            terminal: true,
            ..Default::default()
        };
        let e = Console::open(&stdio, "c", "ns").await.unwrap_err();
        assert!(e.to_string().contains("tty"), "{e}");
    }
}
