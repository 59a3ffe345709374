// The NIC service loop shared by `net` and `net2` (included with `include!`).

fn serve(ctx: &Ctx, nics: &[(&str, [u8; 4])], count: u64) -> i32 {
    use solo5_rt::net::{fmt_mac, read, respond, write, Handled};
    let mut devs = [None; 2];
    let mut mtu = 0;
    for (i, (name, _)) in nics.iter().enumerate() {
        let d = ctx.expect_device(name, DEV_NET);
        let mut mac = [0u8; 17];
        fmt_mac(&d.mac, &mut mac);
        println!("net ready {name} mac={} mtu={}", core::str::from_utf8(&mac).unwrap_or("?"), d.mtu);
        mtu = mtu.max(usize::from(d.mtu));
        devs[i] = Some(d);
    }
    let Some(buf) = solo5_rt::mem::alloc(ctx.mem_size(), mtu + 64, 1 << 20) else {
        println!("net: out of memory");
        return 1;
    };
    let mut handled = 0u64;
    let mut ready = u64::MAX;
    loop {
        for (i, (_, ip)) in nics.iter().enumerate() {
            let Some(d) = devs[i] else { continue };
            if ready & (1 << d.index) == 0 {
                continue;
            }
            // Drain every frame waiting on this NIC.
            while let Some(n) = read(&d, buf) {
                let (what, len) = respond(buf, n, d.mac, *ip);
                if what == Handled::Ignored {
                    continue;
                }
                write(&d, &buf[..len]);
                if what != Handled::Arp {
                    handled += 1;
                    if count != 0 && handled >= count {
                        println!("net done packets={handled}");
                        return 0;
                    }
                }
            }
        }
        ready = solo5_rt::yield_until(ctx, solo5_rt::clock_monotonic() + 1_000_000_000);
    }
}
