//! Sets up a TLS block with `arch_prctl(ARCH_SET_FS)` (x86_64 variant II: the thread pointer
//! points at itself) and reads and writes through `%fs`.
#![no_std]
#![no_main]

use core::arch::asm;

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

static mut TLS_BLOCK: [u64; 8] = [0; 8];

fn main(_ctx: &Ctx) -> i32 {
    // SAFETY: the guest is single-threaded; the block lives for the whole run.
    let tp = unsafe { core::ptr::addr_of_mut!(TLS_BLOCK[4]) };
    // SAFETY: as above; writes inside the block.
    unsafe {
        tp.write(tp as u64);
        tp.sub(1).write(0x5ee5_a11d);
    }
    let rc = solo5_rt::sys::set_fs_base(tp as u64);
    if rc != 0 {
        println!("arch_prctl failed: {rc}");
        return 1;
    }
    let (self_ptr, var): (u64, u64);
    // SAFETY: %fs now points at the block; both loads stay inside it.
    unsafe {
        asm!("mov {0}, fs:0", "mov {1}, fs:-8", out(reg) self_ptr, out(reg) var,
             options(nostack, readonly));
        asm!("mov qword ptr fs:-16, {0}", in(reg) 77u64, options(nostack));
    }
    // SAFETY: reads back what the %fs store wrote.
    let written = unsafe { tp.sub(2).read_volatile() };
    if self_ptr == tp as u64 && var == 0x5ee5_a11d && written == 77 {
        println!("TLS OK");
        0
    } else {
        println!("TLS mismatch: {self_ptr:#x} {var:#x} {written}");
        1
    }
}
