//! `struct spt_boot_info` at guest address 0x11000, followed by the manifest and the command
//! line (spec §2.2).

use crate::memory::GuestMemory;

/// Guest address of the boot info (`SPT_BOOT_INFO_BASE`).
pub const BOOT_INFO_BASE: u64 = 0x1_1000;
/// Size of `struct spt_boot_info`.
const BOOT_INFO_SIZE: u64 = 40;
/// Room for the command line, NUL included (`SPT_CMDLINE_SIZE`).
pub const CMDLINE_SIZE: usize = 8192;

/// The command line does not fit.
#[derive(Debug, thiserror::Error)]
#[error("Guest command line too long (max={} characters)", CMDLINE_SIZE - 1)]
pub struct CmdlineTooLong;

/// What the guest finds at 0x11000.
pub struct BootInfo<'a> {
    /// End of the highest loaded segment.
    pub kernel_end: u64,
    /// The filled-in manifest (`struct mft`).
    pub manifest: &'a [u8],
    /// The command line, without NUL.
    pub cmdline: &'a [u8],
    /// The epoll fd for `solo5_yield`.
    pub epoll_fd: i32,
    /// The timerfd for `solo5_yield`.
    pub timer_fd: i32,
}

/// Joins guest arguments with single spaces, unquoted, as upstream does.
pub fn join_cmdline<S: AsRef<[u8]>>(args: &[S]) -> Result<Vec<u8>, CmdlineTooLong> {
    let line = args
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(&b' ');
    check_cmdline(&line)?;
    Ok(line)
}

/// Refuses a command line longer than 8191 characters.
pub fn check_cmdline(line: &[u8]) -> Result<(), CmdlineTooLong> {
    if line.len() >= CMDLINE_SIZE {
        return Err(CmdlineTooLong);
    }
    Ok(())
}

impl BootInfo<'_> {
    /// Writes the boot info, manifest and command line into guest memory; returns the
    /// boot info address, which the guest receives in `%rdi`.
    pub fn write(&self, mem: &mut GuestMemory) -> Result<u64, CmdlineTooLong> {
        check_cmdline(self.cmdline)?;
        let mft_addr = BOOT_INFO_BASE + BOOT_INFO_SIZE;
        let cmdline_addr = mft_addr + self.manifest.len() as u64;
        let mut info = Vec::with_capacity(BOOT_INFO_SIZE as usize);
        info.extend_from_slice(&mem.size().to_le_bytes());
        info.extend_from_slice(&self.kernel_end.to_le_bytes());
        info.extend_from_slice(&cmdline_addr.to_le_bytes());
        info.extend_from_slice(&mft_addr.to_le_bytes());
        info.extend_from_slice(&self.epoll_fd.to_le_bytes());
        info.extend_from_slice(&self.timer_fd.to_le_bytes());
        mem.slice_mut(BOOT_INFO_BASE, BOOT_INFO_SIZE)
            .copy_from_slice(&info);
        mem.slice_mut(mft_addr, self.manifest.len() as u64)
            .copy_from_slice(self.manifest);
        let line = mem.slice_mut(cmdline_addr, self.cmdline.len() as u64 + 1);
        line[..self.cmdline.len()].copy_from_slice(self.cmdline);
        line[self.cmdline.len()] = 0;
        Ok(BOOT_INFO_BASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_joins_with_spaces_up_to_8191() {
        assert_eq!(join_cmdline(&["a", "b", "c d"]).unwrap(), b"a b c d");
        assert_eq!(join_cmdline::<&str>(&[]).unwrap(), b"");
        assert!(join_cmdline(&["x".repeat(8191)]).is_ok());
        assert!(join_cmdline(&["x".repeat(8192)]).is_err());
        assert!(join_cmdline(&["x".repeat(4095), "y".repeat(4096)]).is_err());
    }
}
