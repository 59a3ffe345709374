//! The daemon's log: tracing events (and the `containerd-shim` crate's `log` records) go to
//! the bundle's `log` FIFO, which containerd copies into its own log. Writes never block: if
//! containerd is not reading (it is restarting), lines are dropped rather than stalling the
//! shim.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

/// A writer that drops what the FIFO cannot take right now.
struct DropWhenFull(File);

impl Write for DropWhenFull {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Ok(n) => Ok(n),
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets up logging to `./log` at `level` (the `start` action and the daemon run in the bundle
/// directory).
/// Without a `log` FIFO (run by hand), logs go nowhere.
pub fn init(level: &str) {
    let level = level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log");
    let Ok(file) = file else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(DropWhenFull(file)))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
}
