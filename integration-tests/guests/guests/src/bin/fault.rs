//! `fault null` writes to address 8 (the unmapped zero page); `fault text` writes to its own
//! code. Both die with SIGSEGV.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let target = match ctx.args().next() {
        Some("null") => 8usize as *mut u8,
        Some("text") => main as *const () as *mut u8,
        _ => {
            println!("usage: fault null|text");
            return 2;
        }
    };
    println!("fault: writing to {target:p}");
    // SAFETY: not safe at all: the point is to fault.
    unsafe { target.write_volatile(0x42) };
    println!("fault: survived the write");
    1
}
