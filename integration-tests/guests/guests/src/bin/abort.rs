//! Calls `solo5_abort`: status 255.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, Ctx};

manifest!();
entry!(main);

fn main(_ctx: &Ctx) -> i32 {
    solo5_rt::abort()
}
