//! Makes a raw `dup(1)`, which the filter does not allow: dies with SIGSYS.
#![no_std]
#![no_main]

use solo5_rt::sys::{nr, syscall6};
use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(_ctx: &Ctx) -> i32 {
    println!("forbidden: calling dup(1)");
    let rc = syscall6(nr::DUP, 1, 0, 0, 0, 0, 0);
    println!("forbidden: dup returned {rc}");
    1
}
