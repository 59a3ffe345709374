//! `flood N`: writes N MiB of numbered 64-byte lines to the console in 64 KiB writes.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

const LINE: usize = 64;
const CHUNK: usize = 64 * 1024;

fn main(ctx: &Ctx) -> i32 {
    let Some(mib) = ctx.args().next().and_then(|a| a.parse::<u64>().ok()) else {
        println!("usage: flood MIB");
        return 2;
    };
    let Some(buf) = solo5_rt::mem::alloc(ctx.mem_size(), CHUNK, 1 << 20) else {
        println!("flood: out of memory");
        return 1;
    };
    let lines = (mib << 20) / LINE as u64;
    let mut n = 0u64;
    while n < lines {
        let mut len = 0;
        while len + LINE <= CHUNK && n < lines {
            let line = &mut buf[len..len + LINE];
            let mut v = n;
            for d in line[..8].iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            line[8] = b' ';
            line[9..LINE - 1].fill(b'x');
            line[LINE - 1] = b'\n';
            len += LINE;
            n += 1;
        }
        solo5_rt::console::write_all(&buf[..len]);
    }
    0
}
