//! 63 block devices, blk0 to blk62 (the most a manifest holds): reads block 0 of each.
#![no_std]
#![no_main]

use solo5_rt::{block, entry, println, Ctx, MftEntry, MftNote, DEV_BLOCK};

#[used]
#[link_section = ".note.solo5.manifest"]
static SOLO5_MANIFEST: MftNote<64> = {
    let mut e = [MftEntry::RESERVED; 64];
    let mut i = 1;
    while i < 64 {
        e[i] = MftEntry::numbered("blk", i - 1, DEV_BLOCK);
        i += 1;
    }
    MftNote::new(e)
};

entry!(main);

fn main(ctx: &Ctx) -> i32 {
    let Some(buf) = solo5_rt::mem::alloc(ctx.mem_size(), 65536, 1 << 20) else {
        return 1;
    };
    let mut n = 0;
    for i in 1..ctx.manifest_entries() {
        let Some(d) = ctx.device_at(i) else { return 1 };
        if d.kind != DEV_BLOCK || !d.attached {
            println!("manydev: {} not attached", ctx.device_name(i));
            return 1;
        }
        if block::read(&d, 0, &mut buf[..d.block_size as usize]).is_err() {
            println!("manydev: reading {} failed", ctx.device_name(i));
            return 1;
        }
        n += 1;
    }
    println!("manydev ok devices={n}");
    0
}
