//! Prints the guest memory size and where the loaded image ends.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let bi = ctx.boot_info();
    println!("mem_size={}", bi.mem_size);
    println!("kernel_end={:#x}", bi.kernel_end);
    println!("heap_start={:#x}", solo5_rt::mem::heap_start());
    0
}
