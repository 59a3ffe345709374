//! The tender's end of the control channel to the shim (`proto/control.proto`): report
//! ready or the error, then wait for the start command.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nabla_proto::control::{
    shim_command, tender_report, Error, Manifest, Ready, ShimCommand, TenderReport,
};
use prost::Message;

/// Errors on the control channel.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The fd given with `--x-control-fd` is not a socket.
    #[error("--x-control-fd={fd} is not a socket: {reason}")]
    NotASocket {
        /// The fd.
        fd: RawFd,
        /// Why.
        reason: String,
    },
    /// Sending or receiving failed.
    #[error("Control channel: {0}")]
    Io(#[from] nix::Error),
    /// The shim went away before telling the tender to start.
    #[error("Control channel closed before the start command")]
    Closed,
    /// The shim sent something that is not a start command.
    #[error("Control channel: unexpected message")]
    Unexpected,
}

/// The control socket inherited from the shim.
pub struct Control {
    fd: OwnedFd,
}

impl Control {
    /// Takes ownership of the inherited control socket `fd`.
    pub fn from_fd(fd: RawFd) -> Result<Self, ControlError> {
        let not_socket = |reason: String| ControlError::NotASocket { fd, reason };
        let st = nix::sys::stat::fstat(
            // SAFETY: fstat only reads the fd's metadata; an invalid fd gives EBADF.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )
        .map_err(|e| not_socket(e.to_string()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(not_socket("wrong file type".into()));
        }
        // SAFETY: the fd was passed to this process for the control channel alone.
        Ok(Control {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The fd number, which the fd cleanup must keep.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn send(&self, report: tender_report::Report) -> Result<(), ControlError> {
        let msg = TenderReport {
            report: Some(report),
        }
        .encode_to_vec();
        nix::unistd::write(&self.fd, &msg)?;
        Ok(())
    }

    /// Reports a failure (best effort: the tender exits right after).
    pub fn report_error(&self, message: &str) {
        let _ = self.send(tender_report::Report::Error(Error {
            message: message.to_string(),
        }));
    }

    /// Reports what the manifest declares (`--x-describe`).
    pub fn report_manifest(&self, manifest: Manifest) -> Result<(), ControlError> {
        self.send(tender_report::Report::Manifest(manifest))
    }

    /// Reports readiness, then blocks until the shim says start.
    pub fn ready_then_wait(&self, ready: Ready) -> Result<(), ControlError> {
        self.send(tender_report::Report::Ready(ready))?;
        let mut buf = [0u8; 256];
        let n = loop {
            match nix::unistd::read(&self.fd, &mut buf) {
                Err(nix::Error::EINTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(ControlError::Closed);
        }
        match ShimCommand::decode(&buf[..n]) {
            Ok(ShimCommand {
                command: Some(shim_command::Command::Start(_)),
            }) => Ok(()),
            _ => Err(ControlError::Unexpected),
        }
    }
}
