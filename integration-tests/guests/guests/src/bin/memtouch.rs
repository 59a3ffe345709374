//! `memtouch N`: touches N MiB of heap, one byte per page; exit 1 if they do not fit.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let Some(mib) = ctx.args().next().and_then(|a| a.parse::<usize>().ok()) else {
        println!("usage: memtouch MIB");
        return 2;
    };
    let Some(buf) = solo5_rt::mem::alloc(ctx.mem_size(), mib << 20, 1 << 20) else {
        println!(
            "memtouch: {mib} MiB do not fit in {} bytes of guest memory",
            ctx.mem_size()
        );
        return 1;
    };
    for page in buf.chunks_mut(4096) {
        // SAFETY: a plain write inside the slice; volatile so that it really happens.
        unsafe { core::ptr::write_volatile(&mut page[0], 1) };
    }
    println!("touched {mib} MiB");
    0
}
