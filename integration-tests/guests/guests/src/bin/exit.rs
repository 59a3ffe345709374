//! `exit N`: exits with status N (the kernel keeps the low 8 bits).
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    match ctx.args().next().map(str::parse::<i64>) {
        Some(Ok(n)) => n as i32,
        _ => {
            println!("usage: exit N");
            2
        }
    }
}
