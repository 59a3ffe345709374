//! `NET_BASIC` devices: `--net:NAME=IFACE`, `--net:NAME=@FD` and `--net-mac:NAME=MAC`
//! (spec §1.4, §3 rules 8–9, §5). Unlike upstream v0.12.1, `@FD` works: the MTU is read for
//! inherited taps too.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::{declared, split_named, tap, Attached, DeviceError, DeviceModule};
use crate::events::EventSet;
use crate::manifest::{DeviceKind, Manifest};
use crate::policy::{Arg, Policy};

struct NetDevice {
    index: usize,
    name: String,
    iface: String,
    tap: OwnedFd,
}

/// The net module.
#[derive(Default)]
pub struct NetModule {
    devices: Vec<NetDevice>,
    macs: HashMap<String, [u8; 6]>,
}

impl NetModule {
    /// The fd numbers given as `--net:NAME=@FD`, which must survive the tender's fd cleanup.
    pub fn inherited_fds(options: &[String]) -> Vec<i32> {
        options
            .iter()
            .filter_map(|o| o.strip_prefix("--net:"))
            .filter_map(|o| o.split_once("=@"))
            .filter_map(|(_, fd)| fd.parse().ok())
            .collect()
    }
}

fn attach_error(iface: &str, reason: impl ToString) -> DeviceError {
    DeviceError::NetAttach {
        iface: iface.to_string(),
        reason: reason.to_string(),
    }
}

impl DeviceModule for NetModule {
    fn parse_option(&mut self, opt: &str, manifest: &Manifest) -> Result<bool, DeviceError> {
        if let Some(named) = split_named(opt, "--net:") {
            let (name, iface) = named?;
            let index = declared(manifest, name, DeviceKind::Net)?;
            if self.devices.iter().any(|d| d.index == index) {
                return Err(DeviceError::Duplicate(name.to_string()));
            }
            let (tap, ifname) = if let Some(fd) = iface.strip_prefix('@') {
                let fd: i32 = fd
                    .parse()
                    .ok()
                    .filter(|fd| *fd >= 0)
                    .ok_or_else(|| attach_error(iface, "not a file descriptor number"))?;
                if self.devices.iter().any(|d| d.tap.as_raw_fd() == fd) {
                    return Err(attach_error(iface, "file descriptor given twice"));
                }
                let ifname = tap::identify(fd).map_err(|e| attach_error(iface, e))?;
                // SAFETY: the fd was inherited for this device alone (checked to be a tap
                // above, and not claimed by another device); the module now owns it.
                (unsafe { OwnedFd::from_raw_fd(fd) }, ifname)
            } else {
                tap::check_up(iface).map_err(|e| attach_error(iface, e))?;
                (
                    tap::attach(iface).map_err(|e| attach_error(iface, e))?,
                    iface.to_string(),
                )
            };
            self.devices.push(NetDevice {
                index,
                name: name.to_string(),
                iface: ifname,
                tap,
            });
            return Ok(true);
        }
        if let Some(named) = split_named(opt, "--net-mac:") {
            let (name, value) = named?;
            declared(manifest, name, DeviceKind::Net)?;
            let mac = parse_mac(value).ok_or_else(|| DeviceError::BadMac(value.to_string()))?;
            self.macs.insert(name.to_string(), mac);
            return Ok(true);
        }
        Ok(false)
    }

    fn setup(
        &mut self,
        manifest: &mut Manifest,
        events: &EventSet,
        policy: &mut Policy,
    ) -> Result<Vec<Attached>, DeviceError> {
        let mut attached = Vec::new();
        for dev in &self.devices {
            let fd = dev.tap.as_raw_fd();
            let shown = || format!("{} ({})", dev.iface, dev.name);
            let mtu =
                tap::mtu_and_offloads(fd, &dev.iface).map_err(|e| attach_error(&shown(), e))?;
            let mtu = u16::try_from(mtu)
                .map_err(|_| attach_error(&shown(), format!("MTU {mtu} too large")))?;
            let mac = match self.macs.get(&dev.name) {
                Some(mac) => *mac,
                None => random_mac().map_err(|e| attach_error(&shown(), e))?,
            };
            manifest.attach_net(dev.index, mac, mtu, fd);
            events.add_device(dev.tap.as_fd(), dev.index)?;
            policy.allow(libc::SYS_read, &[Arg::Eq(0, fd as u64)]);
            policy.allow(libc::SYS_write, &[Arg::Eq(0, fd as u64)]);
            attached.push(Attached {
                name: dev.name.clone(),
                kind: DeviceKind::Net,
                capacity: 0,
                block_size: 0,
                mac,
                mtu,
            });
        }
        Ok(attached)
    }

    fn guest_fds(&self) -> Vec<std::os::unix::io::RawFd> {
        self.devices.iter().map(|d| d.tap.as_raw_fd()).collect()
    }
}

/// Parses `xx:xx:xx:xx:xx:xx` (hex, 1–2 digits per byte).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A random locally administered unicast MAC, as upstream makes them.
fn random_mac() -> std::io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut filled = 0;
    while filled < mac.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n =
            unsafe { libc::getrandom(mac[filled..].as_mut_ptr().cast(), mac.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// Formats a MAC as `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        assert_eq!(parse_mac("02:00:0a:0b:0c:0d"), Some([2, 0, 10, 11, 12, 13]));
        assert_eq!(parse_mac("2:0:a:b:c:d"), Some([2, 0, 10, 11, 12, 13]));
        assert_eq!(parse_mac("02:00:0a:0b:0c"), None);
        assert_eq!(parse_mac("02:00:0a:0b:0c:0d:0e"), None);
        assert_eq!(parse_mac("zz:00:0a:0b:0c:0d"), None);
        assert_eq!(format_mac(&[2, 0, 10, 11, 12, 13]), "02:00:0a:0b:0c:0d");
        let r = random_mac().unwrap();
        assert_eq!(r[0] & 0x03, 0x02);
    }

    #[test]
    fn inherited_fds_are_found() {
        let opts = vec![
            "--net:a=@7".to_string(),
            "--net:b=tap0".to_string(),
            "--mem=2".into(),
        ];
        assert_eq!(NetModule::inherited_fds(&opts), vec![7]);
    }
}
