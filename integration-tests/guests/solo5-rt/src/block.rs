//! Block access (`solo5_block_read`/`write`): exactly one block per call, as the bindings and
//! the tender's filter require.

use crate::{sys, Device};

/// `EINVAL`.
pub const EINVAL: i64 = 22;

fn check(dev: &Device, off: u64, len: usize) -> Result<(), i64> {
    let bs = dev.block_size;
    if len as u64 != bs || !off.is_multiple_of(bs) || dev.capacity < bs || off > dev.capacity - bs {
        return Err(EINVAL);
    }
    Ok(())
}

/// Reads the block at `off` into `buf` (`buf.len()` must be the block size); `Err(errno)`.
pub fn read(dev: &Device, off: u64, buf: &mut [u8]) -> Result<(), i64> {
    check(dev, off, buf.len())?;
    match sys::pread64(dev.fd, buf, off) {
        n if n == buf.len() as i64 => Ok(()),
        n if n < 0 => Err(-n),
        _ => Err(5),
    }
}

/// Writes `buf` to the block at `off`; `Err(errno)`.
pub fn write(dev: &Device, off: u64, buf: &[u8]) -> Result<(), i64> {
    check(dev, off, buf.len())?;
    match sys::pwrite64(dev.fd, buf, off) {
        n if n == buf.len() as i64 => Ok(()),
        n if n < 0 => Err(-n),
        _ => Err(5),
    }
}
