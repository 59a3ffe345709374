// Shared by `probe` and `probe-dev` (included with `include!`).
//
// `probe NR [A0..A5]`: prints `probe NR`, makes that raw system call and prints
// `survived rc=RC`. Numbers are decimal or 0x-hex; `epollfd`, `timerfd`, `fd:NAME`, `bs:NAME`,
// `cap:NAME` and `last:NAME` (capacity - block size) are read from the boot info and manifest.

fn value(ctx: &Ctx, s: &str) -> Option<u64> {
    let bi = ctx.boot_info();
    if let Some(h) = s.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    if s == "epollfd" {
        return Some(bi.epollfd as u64);
    }
    if s == "timerfd" {
        return Some(bi.timerfd as u64);
    }
    let (what, name) = s.split_once(':')?;
    let d = ctx.device(name)?;
    Some(match what {
        "fd" => d.fd as u64,
        "bs" => d.block_size,
        "cap" => d.capacity,
        "last" => d.capacity.wrapping_sub(d.block_size),
        _ => return None,
    })
}

fn main(ctx: &Ctx) -> i32 {
    let mut v = [0u64; 7];
    let mut n = 0;
    for a in ctx.args() {
        if n == 7 {
            break;
        }
        match value(ctx, a) {
            Some(x) => v[n] = x,
            None => {
                println!("probe: bad argument {a:?}");
                return 2;
            }
        }
        n += 1;
    }
    if n == 0 {
        println!("usage: probe NR [A0..A5]");
        return 2;
    }
    // Printed before the call, so that a SIGSYS verdict shows the probe got this far.
    println!("probe {}", v[0]);
    let rc = syscall6(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    println!("survived rc={rc}");
    0
}
