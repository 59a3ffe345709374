//! Guest memory: one anonymous region at `[0x10000, mem_size)` of the tender's own address
//! space (spec §2.1). Guest address == host address. Reserved, never pre-touched.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, mprotect, MapFlags, ProtFlags};

/// Lowest guest address mapped (`SPT_HOST_MEM_BASE`); below it stays unmapped so NULL faults.
pub const HOST_MEM_BASE: u64 = 0x1_0000;

/// Errors reserving or using guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size cannot be represented or is too small to hold a guest.
    #[error("Guest memory size of {0} MiB is not supported")]
    BadSize(u64),
    /// Something of the tender's own already lives inside the guest range.
    #[error(
        "Guest memory [{HOST_MEM_BASE:#x}, {0:#x}) collides with the tender's own mappings; \
         use a smaller --mem"
    )]
    Collision(u64),
    /// The kernel refused the mapping (e.g. `vm.mmap_min_addr` above 0x10000, or no memory).
    #[error("Could not reserve guest memory [{HOST_MEM_BASE:#x}, {size:#x}): {source}{hint}")]
    Map {
        /// Guest memory size.
        size: u64,
        /// The cause.
        source: nix::Error,
        /// A hint for the common cause.
        hint: &'static str,
    },
    /// The personality would make every mapping executable.
    #[error(
        "Process personality has READ_IMPLIES_EXEC set, which would make guest data executable"
    )]
    ReadImpliesExec,
}

/// Page protection for a guest range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// PROT_READ.
    pub read: bool,
    /// PROT_WRITE.
    pub write: bool,
    /// PROT_EXEC.
    pub exec: bool,
}

impl Protection {
    fn flags(self) -> ProtFlags {
        let mut f = ProtFlags::PROT_NONE;
        if self.read {
            f |= ProtFlags::PROT_READ;
        }
        if self.write {
            f |= ProtFlags::PROT_WRITE;
        }
        if self.exec {
            f |= ProtFlags::PROT_EXEC;
        }
        f
    }
}

/// The guest's memory region. It has no `Drop`: it is never unmapped, since after the jump
/// it belongs to the guest.
#[derive(Debug)]
pub struct GuestMemory {
    size: u64,
}

impl GuestMemory {
    /// Converts `--mem` MiB to bytes, refusing sizes the address space cannot hold.
    pub fn size_from_mib(mib: u64) -> Result<u64, MemoryError> {
        // 2^46 bytes (64 TiB) is far above any sane guest and far below the tender's own
        // mappings on a 47-bit address space.
        mib.checked_mul(1 << 20)
            .filter(|s| *s > HOST_MEM_BASE + 0x2000 && *s <= 1 << 46)
            .ok_or(MemoryError::BadSize(mib))
    }

    /// Reserves `[0x10000, size)` read-write (and executable with `exec_heap`).
    ///
    /// `MAP_FIXED_NOREPLACE` makes the kernel refuse rather than replace any mapping of the
    /// tender's own that happens to lie in the range.
    pub fn reserve(size: u64, exec_heap: bool) -> Result<Self, MemoryError> {
        check_personality()?;
        let len = NonZeroUsize::new((size - HOST_MEM_BASE) as usize).expect("size checked");
        let addr = NonZeroUsize::new(HOST_MEM_BASE as usize);
        let mut prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        if exec_heap {
            prot |= ProtFlags::PROT_EXEC;
        }
        let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED_NOREPLACE | MapFlags::MAP_NORESERVE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory the
        // tender uses can be affected; the result is checked below.
        let ptr = unsafe { mmap_anonymous(addr, len, prot, flags) }.map_err(|e| match e {
            nix::Error::EEXIST => MemoryError::Collision(size),
            nix::Error::EPERM => MemoryError::Map {
                size,
                source: e,
                hint: " (is vm.mmap_min_addr above 0x10000?)",
            },
            _ => MemoryError::Map {
                size,
                source: e,
                hint: "",
            },
        })?;
        if ptr.as_ptr() as u64 != HOST_MEM_BASE {
            // A kernel older than 4.17 treats the flag as a hint and maps elsewhere.
            // SAFETY: the mapping was just created by us and nothing refers to it.
            let _ = unsafe { nix::sys::mman::munmap(ptr, len.get()) };
            return Err(MemoryError::Collision(size));
        }
        Ok(GuestMemory { size })
    }

    /// Guest memory size in bytes (the guest's address limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bytes at guest address `[addr, addr + len)`.
    ///
    /// Panics if the range is not inside guest memory; callers check ranges first.
    pub fn slice_mut(&mut self, addr: u64, len: u64) -> &mut [u8] {
        assert!(addr >= HOST_MEM_BASE && addr.checked_add(len).is_some_and(|e| e <= self.size));
        // SAFETY: [addr, addr+len) lies inside the region reserved in `reserve`, which is
        // never unmapped and which no Rust object aliases (only the tender writes it, one
        // slice at a time, before the guest runs).
        unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
    }

    /// Sets the protection of `[addr, addr + len)`, a page-aligned range of guest memory.
    pub fn protect(&self, addr: u64, len: u64, prot: Protection) -> nix::Result<()> {
        assert!(addr >= HOST_MEM_BASE && addr.checked_add(len).is_some_and(|e| e <= self.size));
        let ptr = NonNull::new(addr as *mut std::ffi::c_void).expect("non-null");
        // SAFETY: the range lies inside guest memory, which holds no Rust objects.
        unsafe { mprotect(ptr, len as usize, prot.flags()) }
    }
}

fn check_personality() -> Result<(), MemoryError> {
    let persona = nix::sys::personality::get().map_err(|source| MemoryError::Map {
        size: 0,
        source,
        hint: " (reading personality)",
    })?;
    if persona.contains(nix::sys::personality::Persona::READ_IMPLIES_EXEC) {
        return Err(MemoryError::ReadImpliesExec);
    }
    Ok(())
}
