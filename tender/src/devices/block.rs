//! `BLOCK_BASIC` devices: `--block:NAME=PATH`, `--block-sector-size:NAME=N` and
//! `--x-block-readonly:NAME` (spec §1.4, §3 rules 10–11, §5).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;

use super::{declared, split_named, valid_name, Attached, DeviceError, DeviceModule};
use crate::events::EventSet;
use crate::manifest::{DeviceKind, Manifest};
use crate::policy::{Arg, Policy};

const DEFAULT_BLOCK_SIZE: u16 = 512;

struct BlockDevice {
    index: usize,
    name: String,
    file: File,
}

/// The block module.
#[derive(Default)]
pub struct BlockModule {
    devices: Vec<BlockDevice>,
    sector_sizes: HashMap<String, u16>,
    readonly: Vec<String>,
}

impl DeviceModule for BlockModule {
    fn parse_option(&mut self, opt: &str, manifest: &Manifest) -> Result<bool, DeviceError> {
        if let Some(named) = split_named(opt, "--block:") {
            let (name, path) = named?;
            let index = declared(manifest, name, DeviceKind::Block)?;
            if self.devices.iter().any(|d| d.index == index) {
                return Err(DeviceError::Duplicate(name.to_string()));
            }
            let write = !self.readonly.iter().any(|n| n == name);
            let file = OpenOptions::new()
                .read(true)
                .write(write)
                .open(path)
                .map_err(|source| DeviceError::BlockOpen {
                    path: path.to_string(),
                    source,
                })?;
            self.devices.push(BlockDevice {
                index,
                name: name.to_string(),
                file,
            });
            return Ok(true);
        }
        if let Some(named) = split_named(opt, "--block-sector-size:") {
            let (name, value) = named?;
            declared(manifest, name, DeviceKind::Block)?;
            let size = value
                .parse::<u16>()
                .ok()
                .filter(|s| *s >= 512 && s.is_power_of_two())
                .ok_or_else(|| DeviceError::BadSectorSize(value.to_string()))?;
            self.sector_sizes.insert(name.to_string(), size);
            return Ok(true);
        }
        if let Some(name) = opt.strip_prefix("--x-block-readonly:") {
            if !valid_name(name) {
                return Err(DeviceError::Malformed(opt.to_string()));
            }
            declared(manifest, name, DeviceKind::Block)?;
            if self.devices.iter().any(|d| d.name == name) {
                return Err(DeviceError::ReadonlyTooLate(name.to_string()));
            }
            self.readonly.push(name.to_string());
            return Ok(true);
        }
        Ok(false)
    }

    fn setup(
        &mut self,
        manifest: &mut Manifest,
        _events: &EventSet,
        policy: &mut Policy,
    ) -> Result<Vec<Attached>, DeviceError> {
        let mut attached = Vec::new();
        for dev in &mut self.devices {
            let block_size = self
                .sector_sizes
                .get(&dev.name)
                .copied()
                .unwrap_or(DEFAULT_BLOCK_SIZE);
            // lseek(SEEK_END) gives the size of regular files and block devices alike.
            let capacity =
                dev.file
                    .seek(SeekFrom::End(0))
                    .map_err(|source| DeviceError::BlockSize {
                        name: dev.name.clone(),
                        source,
                    })?;
            let bs = u64::from(block_size);
            if capacity % bs != 0 {
                return Err(DeviceError::Unaligned {
                    name: dev.name.clone(),
                    block_size,
                });
            }
            if capacity < bs {
                return Err(DeviceError::TooSmall {
                    name: dev.name.clone(),
                    block_size,
                });
            }
            let fd = dev.file.as_raw_fd();
            manifest.attach_block(dev.index, capacity, block_size, fd);
            // Exactly one block per call, never past the last block.
            let pinned = [
                Arg::Eq(0, fd as u64),
                Arg::Eq(2, bs),
                Arg::Le(3, capacity - bs),
            ];
            policy.allow(libc::SYS_pread64, &pinned);
            policy.allow(libc::SYS_pwrite64, &pinned);
            attached.push(Attached {
                name: dev.name.clone(),
                kind: DeviceKind::Block,
                capacity,
                block_size,
                mac: [0; 6],
                mtu: 0,
            });
        }
        Ok(attached)
    }

    fn guest_fds(&self) -> Vec<std::os::unix::io::RawFd> {
        self.devices.iter().map(|d| d.file.as_raw_fd()).collect()
    }
}
