//! Reads both clocks and sleeps 100 ms through `solo5_yield`; `clock tick MS [COUNT]` prints
//! `tick N` every MS milliseconds, forever or COUNT times, then exits with status 7.
#![no_std]
#![no_main]

use solo5_rt::{clock_monotonic, clock_wall, entry, manifest, println, yield_until, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let mut args = ctx.args();
    if args.next() == Some("tick") {
        let ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
        let count: Option<u64> = args.next().and_then(|a| a.parse().ok());
        let mut i = 0u64;
        let mut next = clock_monotonic();
        loop {
            if count == Some(i) {
                println!("clock done");
                return 7;
            }
            println!("tick {i}");
            i += 1;
            next += ms * 1_000_000;
            while clock_monotonic() < next {
                yield_until(ctx, next);
            }
        }
    }
    let wall = clock_wall();
    let start = clock_monotonic();
    println!("wall={wall} monotonic={start}");
    let deadline = start + 100_000_000;
    while clock_monotonic() < deadline {
        yield_until(ctx, deadline);
    }
    let slept = clock_monotonic() - start;
    if !(100_000_000..5_000_000_000).contains(&slept) {
        println!("clock: slept {slept} ns");
        return 1;
    }
    if clock_wall() < wall {
        println!("clock: wall clock went backwards");
        return 1;
    }
    println!("slept_ns={slept}");
    println!("clock OK");
    0
}
