//! A minimal runtime for Solo5 **spt** unikernels (ABI v2), written for the tests of
//! `nabla-tender`: the ABI and manifest notes, the entry point, and the Solo5 bindings as raw
//! host system calls, exactly as upstream's `bindings/spt` make them (spec §4).
//!
//! A guest is a `#![no_std] #![no_main]` binary that calls [`manifest!`] to declare its devices
//! and [`entry!`] to name its `fn main(&Ctx) -> i32`.

#![no_std]

pub mod block;
pub mod console;
pub mod mem;
pub mod net;
pub mod notes;
pub mod sys;

use core::fmt::Write;

pub use notes::{MftEntry, MftNote, DEV_BLOCK, DEV_NET};

/// `struct spt_boot_info` at guest address 0x11000 (spec §2.2).
#[repr(C)]
#[derive(Debug)]
pub struct BootInfo {
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// End of the highest loaded segment.
    pub kernel_end: u64,
    /// NUL-terminated command line.
    pub cmdline: *const u8,
    /// The tender's filled-in manifest.
    pub mft: *const u8,
    /// The tender's epoll fd.
    pub epollfd: i32,
    /// The tender's timer fd.
    pub timerfd: i32,
}

/// The guest's view of its world: boot info and manifest.
pub struct Ctx {
    bi: &'static BootInfo,
}

/// A device from the manifest, as the tender attached it.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// Manifest index (the bit `solo5_yield` sets when it is ready).
    pub index: usize,
    /// `DEV_BLOCK` or `DEV_NET`.
    pub kind: u32,
    /// The host fd.
    pub fd: i32,
    /// Block: capacity in bytes.
    pub capacity: u64,
    /// Block: block size.
    pub block_size: u64,
    /// Net: MAC address.
    pub mac: [u8; 6],
    /// Net: MTU.
    pub mtu: u16,
    /// Whether the tender attached it.
    pub attached: bool,
}

impl Ctx {
    /// The boot info.
    pub fn boot_info(&self) -> &'static BootInfo {
        self.bi
    }

    /// Guest memory size.
    pub fn mem_size(&self) -> u64 {
        self.bi.mem_size
    }

    /// The command line the tender passed.
    pub fn cmdline(&self) -> &'static str {
        let mut n = 0;
        // SAFETY: the tender writes a NUL-terminated string of at most 8192 bytes at `cmdline`.
        unsafe {
            while n < 8192 && *self.bi.cmdline.add(n) != 0 {
                n += 1;
            }
            let bytes = core::slice::from_raw_parts(self.bi.cmdline, n);
            core::str::from_utf8(bytes).unwrap_or("")
        }
    }

    /// The command line split on blanks.
    pub fn args(&self) -> core::str::SplitWhitespace<'static> {
        self.cmdline().split_whitespace()
    }

    /// The number of manifest entries (the reserved entry 0 included).
    pub fn manifest_entries(&self) -> usize {
        // SAFETY: the manifest header (u32 version, u32 entries) sits at `mft`.
        unsafe { (self.bi.mft.add(4) as *const u32).read_unaligned() as usize }
    }

    /// Manifest entry `i`.
    pub fn device_at(&self, i: usize) -> Option<Device> {
        if i >= self.manifest_entries() {
            return None;
        }
        // SAFETY: entry i of `manifest_entries()` lies in the manifest the tender wrote.
        let e = unsafe { self.bi.mft.add(8 + i * 104) };
        let rd = |off: usize, len: usize| {
            // SAFETY: off + len <= 104, inside entry i.
            unsafe { core::slice::from_raw_parts(e.add(off), len) }
        };
        let u32_at = |off| u32::from_le_bytes(rd(off, 4).try_into().unwrap());
        let u64_at = |off| u64::from_le_bytes(rd(off, 8).try_into().unwrap());
        let kind = u32_at(68);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(rd(72, 6));
        Some(Device {
            index: i,
            kind,
            fd: u32_at(88) as i32,
            capacity: if kind == DEV_BLOCK { u64_at(72) } else { 0 },
            block_size: if kind == DEV_BLOCK {
                u64::from(u16::from_le_bytes(rd(80, 2).try_into().unwrap()))
            } else {
                0
            },
            mac,
            mtu: u16::from_le_bytes(rd(78, 2).try_into().unwrap()),
            attached: rd(96, 1)[0] != 0,
        })
    }

    /// The name of manifest entry `i`.
    pub fn device_name(&self, i: usize) -> &'static str {
        // SAFETY: names are 68 bytes at the start of each entry, NUL-terminated (validated).
        let name = unsafe { core::slice::from_raw_parts(self.bi.mft.add(8 + i * 104), 68) };
        let n = name.iter().position(|b| *b == 0).unwrap_or(68);
        core::str::from_utf8(&name[..n]).unwrap_or("")
    }

    /// Looks a device up by name (`solo5_block_acquire` / `solo5_net_acquire`).
    pub fn device(&self, name: &str) -> Option<Device> {
        (1..self.manifest_entries())
            .find(|i| self.device_name(*i) == name)
            .and_then(|i| self.device_at(i))
    }

    /// Like [`Ctx::device`], but aborts with a message when the device is missing.
    pub fn expect_device(&self, name: &str, kind: u32) -> Device {
        match self.device(name) {
            Some(d) if d.kind == kind && d.attached => d,
            _ => {
                let _ = writeln!(console::Console, "device {name} not attached");
                abort()
            }
        }
    }
}

/// Ends the guest with `status` (`solo5_exit`).
pub fn exit(status: i32) -> ! {
    sys::exit_group(status)
}

/// `solo5_abort`: the message upstream prints, then status 255.
pub fn abort() -> ! {
    console::write_all(b"Solo5: solo5_abort() called\n");
    sys::exit_group(255)
}

/// Monotonic clock in nanoseconds (`solo5_clock_monotonic`).
pub fn clock_monotonic() -> u64 {
    sys::clock_gettime(sys::CLOCK_MONOTONIC)
}

/// Wall clock in nanoseconds since the epoch (`solo5_clock_wall`).
pub fn clock_wall() -> u64 {
    sys::clock_gettime(sys::CLOCK_REALTIME)
}

/// `solo5_yield`: sleeps until `deadline` (monotonic ns) or until a NIC has frames; returns
/// the set of ready manifest indices as a bit mask.
pub fn yield_until(ctx: &Ctx, deadline: u64) -> u64 {
    sys::timerfd_settime_abs(ctx.bi.timerfd, deadline);
    let mut events = [sys::EpollEvent { events: 0, data: 0 }; 65];
    loop {
        let n = sys::epoll_pwait(ctx.bi.epollfd, &mut events);
        if n == -(sys::EINTR as i64) {
            continue;
        }
        let mut ready = 0u64;
        for ev in events.iter().take(n.max(0) as usize) {
            let data = ev.data;
            if data != 0xffff_fffe && data < 64 {
                ready |= 1 << data;
            }
        }
        return ready;
    }
}

/// Runs `main` with the boot info the tender passed in `%rdi`; the guest's `_start` calls it.
///
/// # Safety
/// `bi` must point at the boot info a Solo5 spt tender wrote, valid for the whole run.
pub unsafe fn start(bi: *const BootInfo, main: fn(&Ctx) -> i32) -> ! {
    // SAFETY: the caller passes the boot info the tender wrote (0x11000).
    let ctx = Ctx {
        bi: unsafe { &*bi },
    };
    exit(main(&ctx))
}

/// Declares the guest's entry point: `entry!(main)` with `fn main(ctx: &Ctx) -> i32`.
///
/// `_start` is naked: it does not trust the stack alignment it is handed (the tender sets
/// `%rsp = mem_size - 8`, spec §2.3, but nothing checks that), aligns `%rsp` to 16 bytes as
/// the SysV ABI wants before a `call`, clears `%rbp` so that frame walks end here, and calls
/// the Rust side with the boot-info pointer still in `%rdi`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The entry point the tender jumps to, with the boot info in `%rdi`.
        #[unsafe(naked)]
        #[no_mangle]
        #[link_section = ".text._start"]
        unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "xor ebp, ebp",
                "and rsp, -16",
                "call {rt_main}",
                "ud2",
                rt_main = sym __solo5_rt_main,
            )
        }

        extern "C" fn __solo5_rt_main(bi: *const $crate::BootInfo) -> ! {
            // SAFETY: `_start` passes on the boot-info address the tender put in %rdi.
            unsafe { $crate::start(bi, $main) }
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(console::Console, "Solo5: ABORT: {info}");
    sys::exit_group(255)
}

/// The precompiled `core` refers to the unwinder's personality routine even with
/// `panic = "abort"`; nothing ever unwinds, so it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
