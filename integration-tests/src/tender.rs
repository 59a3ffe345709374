//! Locating the built binaries and running `nabla-tender` in tests and benchmarks.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests lives in the workspace")
        .to_path_buf()
}

/// The directory holding the release binaries (`NABLA_BIN_DIR` overrides).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("NABLA_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release"))
}

/// The `nabla-tender` binary; panics with the command to build it if it is missing.
pub fn tender_bin() -> PathBuf {
    let p = bin_dir().join("nabla-tender");
    assert!(p.exists(), "{} is missing: run `make` first", p.display());
    p
}

/// A test guest by name; panics with the command to build it if it is missing.
pub fn guest(name: &str) -> PathBuf {
    let p = workspace_root().join("target/guests/release").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make guests` first",
        p.display()
    );
    p
}

/// How a process ended, as a shell reports it: the exit code, or 128 + signal.
pub fn shell_status(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .expect("a finished process has a code or a signal")
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code, or 128 + signal.
    pub status: i32,
    /// Everything written to stdout (the guest console).
    pub stdout: String,
    /// Everything written to stderr (tender diagnostics).
    pub stderr: String,
}

/// Runs `nabla-tender ARGS` with a deadline; kills it and panics if it runs over.
pub fn run_tender<I, S>(args: I, timeout: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(tender_bin());
    cmd.args(args);
    run_command(cmd, timeout)
}

/// Runs `cmd` with stdout and stderr captured and a deadline.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Run {
    let tmp = tempfile_pair();
    cmd.stdin(Stdio::null())
        .stdout(tmp.0.try_clone().expect("dup"))
        .stderr(tmp.1.try_clone().expect("dup"));
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Run {
        status: shell_status(status),
        stdout: read_back(tmp.0),
        stderr: read_back(tmp.1),
    }
}

fn tempfile_pair() -> (std::fs::File, std::fs::File) {
    (anon_file(), anon_file())
}

/// An unnamed temporary file (output goes to files, not pipes, so a flood cannot block).
fn anon_file() -> std::fs::File {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "nabla-out-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("temp file");
    std::fs::remove_file(&path).expect("unlink temp file");
    f
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn read_back(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = Vec::new();
    f.seek(SeekFrom::Start(0)).expect("seek");
    f.read_to_end(&mut s).expect("read");
    String::from_utf8_lossy(&s).into_owned()
}

/// A tender left running, with its console read line by line on a helper thread.
pub struct LiveTender {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LiveTender {
    /// Spawns `cmd` (stdout piped and read in the background, stderr inherited).
    pub fn spawn(mut cmd: Command) -> LiveTender {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tender");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LiveTender {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a console line containing `needle` and returns it; panics with the output so
    /// far if it does not come within `timeout` or the console closes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no console line with {needle:?} ({e}); seen: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the process to end by itself (panics after `timeout`); returns the shell status.
    pub fn wait(mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return shell_status(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "tender did not exit within {timeout:?}; seen: {:?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LiveTender {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
