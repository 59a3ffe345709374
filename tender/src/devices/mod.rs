//! Device modules, in the manner of Solo5's tender: each kind owns its command-line options,
//! its setup (manifest entry, epoll registration) and its seccomp rules.

pub mod block;
pub mod net;
mod tap;

use crate::events::{EventSet, EventsError};
use crate::manifest::{DeviceKind, Manifest};
use crate::policy::Policy;

/// Errors attaching devices; the messages follow upstream's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An option names a device the manifest does not declare (with that kind).
    #[error("Resource not declared in manifest: '{0}'")]
    NotDeclared(String),
    /// A device name is not 1–67 characters of `[A-Za-z0-9]`, or `=` is missing.
    #[error(
        "Invalid option: `{0}' (expected NAME=VALUE, NAME being 1-67 characters of [A-Za-z0-9])"
    )]
    Malformed(String),
    /// The same device was given twice.
    #[error("Device '{0}' is attached more than once")]
    Duplicate(String),
    /// An option that must precede `--block:NAME=` came after it.
    #[error("--x-block-readonly:{0} must come before --block:{0}=PATH")]
    ReadonlyTooLate(String),
    /// The block backing file could not be opened.
    #[error("Could not open block device: {path}: {source}")]
    BlockOpen {
        /// The path given.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The size of the backing storage could not be read.
    #[error("{name}: Could not determine the size of the backing storage: {source}")]
    BlockSize {
        /// Device name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad `--block-sector-size` value.
    #[error("Block size must be a power of two greater than or equal 512: `{0}'")]
    BadSectorSize(String),
    /// Capacity is not a multiple of the block size.
    #[error("{name}: Backing storage size must be block aligned ({block_size} bytes)")]
    Unaligned {
        /// Device name.
        name: String,
        /// Block size.
        block_size: u16,
    },
    /// Capacity is smaller than one block.
    #[error("{name}: Backing storage must be at least 1 block ({block_size} bytes) in size")]
    TooSmall {
        /// Device name.
        name: String,
        /// Block size.
        block_size: u16,
    },
    /// A tap could not be attached.
    #[error("Could not attach interface: {iface}: {reason}")]
    NetAttach {
        /// The interface name or `@FD`.
        iface: String,
        /// What went wrong.
        reason: String,
    },
    /// Bad `--net-mac` value.
    #[error("Malformed MAC address: `{0}' (expected xx:xx:xx:xx:xx:xx)")]
    BadMac(String),
    /// Registering with epoll failed.
    #[error(transparent)]
    Events(#[from] EventsError),
}

/// What an attached device looks like, for the control channel's Ready report.
#[derive(Debug, Clone)]
pub struct Attached {
    /// Manifest name.
    pub name: String,
    /// Kind.
    pub kind: DeviceKind,
    /// Block capacity (bytes).
    pub capacity: u64,
    /// Block size.
    pub block_size: u16,
    /// Net MAC.
    pub mac: [u8; 6],
    /// Net MTU.
    pub mtu: u16,
}

/// A device kind's share of the tender.
pub trait DeviceModule {
    /// Interprets one command-line option if it belongs to this module (`Ok(false)` if not).
    /// Files and taps are opened here, as upstream does.
    fn parse_option(&mut self, opt: &str, manifest: &Manifest) -> Result<bool, DeviceError>;

    /// Attaches every configured device: fills in its manifest entry, registers it for
    /// `solo5_yield` if it can become ready, and adds its seccomp rules.
    fn setup(
        &mut self,
        manifest: &mut Manifest,
        events: &EventSet,
        policy: &mut Policy,
    ) -> Result<Vec<Attached>, DeviceError>;

    /// The fds the guest will use; they stay open across the jump.
    fn guest_fds(&self) -> Vec<std::os::unix::io::RawFd>;
}

/// Splits `--prefix:NAME=VALUE` (with `prefix` including the colon) into NAME and VALUE.
/// `None` if `opt` does not start with `prefix`.
pub(crate) fn split_named<'a>(
    opt: &'a str,
    prefix: &str,
) -> Option<Result<(&'a str, &'a str), DeviceError>> {
    let rest = opt.strip_prefix(prefix)?;
    Some(match rest.split_once('=') {
        Some((name, value)) if valid_name(name) => Ok((name, value)),
        _ => Err(DeviceError::Malformed(opt.to_string())),
    })
}

/// Manifest device names: 1–67 characters of `[A-Za-z0-9]`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=67).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Looks up `name` as a device of `kind`, or says it is not declared.
pub(crate) fn declared(
    manifest: &Manifest,
    name: &str,
    kind: DeviceKind,
) -> Result<usize, DeviceError> {
    manifest
        .find(name, kind)
        .ok_or_else(|| DeviceError::NotDeclared(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(matches!(
            split_named("--block:abc=/x", "--block:"),
            Some(Ok(("abc", "/x")))
        ));
        assert!(matches!(
            split_named("--block:a-b=/x", "--block:"),
            Some(Err(_))
        ));
        assert!(matches!(
            split_named("--block:=/x", "--block:"),
            Some(Err(_))
        ));
        assert!(matches!(
            split_named("--block:abc", "--block:"),
            Some(Err(_))
        ));
        assert!(split_named("--net:abc=tap0", "--block:").is_none());
        assert!(valid_name(&"a".repeat(67)));
        assert!(!valid_name(&"a".repeat(68)));
    }
}
