//! Block device "storage". Modes (first argument):
//! - `check` (default): writes a pattern to every block, reads them all back, reads the last
//!   block, then makes a raw `pread64` one block past the end, which the filter must kill;
//! - `write SEED` / `verify SEED [BLOCKS]`: fill every block from SEED / check it is there
//!   (in the first BLOCKS blocks only, if given);
//! - `readonly`: reads block 0, then expects a write to fail;
//! - `seqread` / `seqwrite`: one timed pass over the device, for benchmarks.
#![no_std]
#![no_main]

use solo5_rt::block;
use solo5_rt::sys::{nr, syscall6};
use solo5_rt::{clock_monotonic, entry, manifest, println, Ctx, Device, DEV_BLOCK};

manifest!(("storage", DEV_BLOCK));
entry!(main);

fn fill(buf: &mut [u8], seed: u64, block: u64) {
    let mut x = seed ^ block.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn write_all(d: &Device, buf: &mut [u8], seed: u64) -> Result<u64, (u64, i64)> {
    let blocks = d.capacity / d.block_size;
    for b in 0..blocks {
        fill(buf, seed, b);
        block::write(d, b * d.block_size, buf).map_err(|e| (b, e))?;
    }
    Ok(blocks)
}

fn verify_all(
    d: &Device,
    buf: &mut [u8],
    want: &mut [u8],
    seed: u64,
    limit: Option<u64>,
) -> Result<u64, u64> {
    let all = d.capacity / d.block_size;
    let blocks = limit.map_or(all, |l| l.min(all));
    for b in 0..blocks {
        fill(want, seed, b);
        if block::read(d, b * d.block_size, buf).is_err() || buf != want {
            return Err(b);
        }
    }
    Ok(blocks)
}

fn main(ctx: &Ctx) -> i32 {
    let d = ctx.expect_device("storage", DEV_BLOCK);
    let bs = d.block_size as usize;
    let (Some(buf), Some(want)) = (
        solo5_rt::mem::alloc(ctx.mem_size(), bs, 1 << 20),
        solo5_rt::mem::alloc(ctx.mem_size(), bs, 1 << 20),
    ) else {
        println!("block: out of memory");
        return 1;
    };
    let mut args = ctx.args();
    let mode = args.next().unwrap_or("check");
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    match mode {
        "check" => {
            if let Err((b, e)) = write_all(&d, buf, 42) {
                println!("block: write of block {b} failed: errno {e}");
                return 1;
            }
            if let Err(b) = verify_all(&d, buf, want, 42, None) {
                println!("block: block {b} did not read back");
                return 1;
            }
            let last = d.capacity - d.block_size;
            if block::read(&d, last, buf).is_err() {
                println!("block: reading the last block failed");
                return 1;
            }
            // The bindings refuse these without asking the host.
            if block::read(&d, d.capacity, buf).is_ok() || block::read(&d, 1, buf).is_ok() {
                println!("block: out-of-range read accepted");
                return 1;
            }
            println!(
                "block ok capacity={} block_size={}",
                d.capacity, d.block_size
            );
            println!("block: reading past the end");
            let rc = syscall6(
                nr::PREAD64,
                d.fd as u64,
                buf.as_mut_ptr() as u64,
                bs as u64,
                d.capacity,
                0,
                0,
            );
            println!("block: the host allowed it: rc={rc}");
            1
        }
        "write" => match write_all(&d, buf, seed) {
            Ok(n) => {
                println!("write ok blocks={n}");
                0
            }
            Err((b, e)) => {
                println!("write FAILED at block {b} errno={e}");
                1
            }
        },
        "verify" => match verify_all(
            &d,
            buf,
            want,
            seed,
            args.next().and_then(|a| a.parse().ok()),
        ) {
            Ok(n) => {
                println!("verify ok blocks={n}");
                0
            }
            Err(b) => {
                println!("verify FAILED at block {b}");
                1
            }
        },
        "readonly" => {
            if block::read(&d, 0, buf).is_err() {
                println!("block: read of block 0 failed");
                return 1;
            }
            // What block 0 starts with, as text: a tar image's first member name and its
            // format magic (offset 257).
            fn text(b: &[u8]) -> &str {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                core::str::from_utf8(&b[..end]).unwrap_or("?")
            }
            if buf.len() >= 263 {
                println!(
                    "block 0 starts with {:?}, magic {:?}",
                    text(&buf[..100]),
                    text(&buf[257..263])
                );
            }
            match block::write(&d, 0, buf) {
                Err(e) => {
                    println!("write refused errno={e}");
                    0
                }
                Ok(()) => {
                    println!("write succeeded");
                    1
                }
            }
        }
        "seqread" | "seqwrite" => {
            let start = clock_monotonic();
            let mut off = 0;
            while off + d.block_size <= d.capacity {
                let r = if mode == "seqread" {
                    block::read(&d, off, buf)
                } else {
                    block::write(&d, off, buf)
                };
                if let Err(e) = r {
                    println!("{mode}: failed at {off}: errno {e}");
                    return 1;
                }
                off += d.block_size;
            }
            println!("{mode} bytes={off} ns={}", clock_monotonic() - start);
            0
        }
        other => {
            println!("block: unknown mode {other:?}");
            2
        }
    }
}
