//! Prints the MTU and MAC the tender gave NIC "service0".
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx, DEV_NET};

manifest!(("service0", DEV_NET));
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let d = ctx.expect_device("service0", DEV_NET);
    let mut mac = [0u8; 17];
    solo5_rt::net::fmt_mac(&d.mac, &mut mac);
    println!(
        "mtu={} mac={}",
        d.mtu,
        core::str::from_utf8(&mac).unwrap_or("?")
    );
    0
}
