//! `net2 IP0 IP1 [COUNT]`: the `net` responder on two NICs, "service0" and "service1".
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx, DEV_NET};

manifest!(("service0", DEV_NET), ("service1", DEV_NET));
entry!(main);

include!("../responder.rs");

fn main(ctx: &Ctx) -> i32 {
    let mut args = ctx.args();
    let ips = (
        args.next().and_then(solo5_rt::net::parse_ipv4),
        args.next().and_then(solo5_rt::net::parse_ipv4),
    );
    let (Some(ip0), Some(ip1)) = ips else {
        println!("usage: net2 IP0 IP1 [COUNT]");
        return 2;
    };
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    serve(ctx, &[("service0", ip0), ("service1", ip1)], count)
}
