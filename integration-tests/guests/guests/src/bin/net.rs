//! `net IP [COUNT]`: answers ARP, ICMP echo and UDP echo (port 7) as IP on NIC "service0";
//! exits after COUNT echo packets (ICMP + UDP), or never when COUNT is 0 or absent.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx, DEV_NET};

manifest!(("service0", DEV_NET));
entry!(main);

include!("../responder.rs");

fn main(ctx: &Ctx) -> i32 {
    let mut args = ctx.args();
    let Some(ip) = args.next().and_then(solo5_rt::net::parse_ipv4) else {
        println!("usage: net IP [COUNT]");
        return 2;
    };
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    serve(ctx, &[("service0", ip)], count)
}
