//! Network access (`solo5_net_read`/`write`) and a tiny IPv4 responder for tests: ARP for its
//! address, ICMP echo, and UDP echo on port 7.

use crate::{sys, Device};

/// `solo5_net_read`: one frame, or `None` when nothing is waiting (`SOLO5_R_AGAIN`).
pub fn read(dev: &Device, buf: &mut [u8]) -> Option<usize> {
    let n = sys::read(dev.fd, buf);
    if n < 0 {
        None
    } else {
        Some(n as usize)
    }
}

/// `solo5_net_write`: true if the whole frame went out.
pub fn write(dev: &Device, frame: &[u8]) -> bool {
    sys::write(dev.fd, frame) == frame.len() as i64
}

/// Parses `a.b.c.d` (a `/prefix` suffix is ignored).
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let s = s.split('/').next()?;
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        *o = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the responder did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Not for us, or not understood.
    Ignored,
    /// An ARP request answered.
    Arp,
    /// An ICMP echo request answered.
    Icmp,
    /// A UDP datagram echoed.
    Udp,
}

/// Answers `frame` in place if it is for `ip`/`mac`; returns what it was and the reply length.
pub fn respond(frame: &mut [u8], len: usize, mac: [u8; 6], ip: [u8; 4]) -> (Handled, usize) {
    if len < 14 {
        return (Handled::Ignored, 0);
    }
    let f = &mut frame[..len];
    let to_us = f[0..6] == mac || f[0..6] == [0xff; 6];
    if !to_us {
        return (Handled::Ignored, 0);
    }
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    match ethertype {
        0x0806 => arp(f, mac, ip),
        0x0800 => ipv4(f, mac, ip),
        _ => (Handled::Ignored, 0),
    }
}

fn swap_eth(f: &mut [u8], mac: [u8; 6]) {
    let mut src = [0u8; 6];
    src.copy_from_slice(&f[6..12]);
    f[0..6].copy_from_slice(&src);
    f[6..12].copy_from_slice(&mac);
}

fn arp(f: &mut [u8], mac: [u8; 6], ip: [u8; 4]) -> (Handled, usize) {
    // Ethernet/IPv4 ARP request for our address.
    if f.len() < 42 || f[14..22] != [0, 1, 8, 0, 6, 4, 0, 1] || f[38..42] != ip {
        return (Handled::Ignored, 0);
    }
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&f[22..28]);
    let mut spa = [0u8; 4];
    spa.copy_from_slice(&f[28..32]);
    swap_eth(f, mac);
    f[21] = 2; // reply
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f[32..38].copy_from_slice(&sha);
    f[38..42].copy_from_slice(&spa);
    (Handled::Arp, 42)
}

fn ipv4(f: &mut [u8], mac: [u8; 6], ip: [u8; 4]) -> (Handled, usize) {
    if f.len() < 34 || f[14] >> 4 != 4 {
        return (Handled::Ignored, 0);
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    if ihl < 20 || total < ihl || 14 + total > f.len() || f[30..34] != ip {
        return (Handled::Ignored, 0);
    }
    // Fragments are not reassembled.
    if u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0 {
        return (Handled::Ignored, 0);
    }
    let l4 = 14 + ihl;
    let end = 14 + total;
    let what = match f[23] {
        1 if end - l4 >= 8 && f[l4] == 8 => {
            f[l4] = 0; // echo reply
            f[l4 + 2] = 0;
            f[l4 + 3] = 0;
            let c = checksum(&f[l4..end]);
            f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
            Handled::Icmp
        }
        17 if end - l4 >= 8 && u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]) == 7 => {
            let (sp, dp) = ([f[l4], f[l4 + 1]], [f[l4 + 2], f[l4 + 3]]);
            f[l4..l4 + 2].copy_from_slice(&dp);
            f[l4 + 2..l4 + 4].copy_from_slice(&sp);
            f[l4 + 6] = 0; // no UDP checksum (allowed over IPv4)
            f[l4 + 7] = 0;
            Handled::Udp
        }
        _ => return (Handled::Ignored, 0),
    };
    let mut src = [0u8; 4];
    src.copy_from_slice(&f[26..30]);
    f[26..30].copy_from_slice(&ip);
    f[30..34].copy_from_slice(&src);
    f[22] = 64; // TTL
    f[24] = 0;
    f[25] = 0;
    let c = checksum(&f[14..l4]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    swap_eth(f, mac);
    (what, end)
}

/// Formats a MAC as `xx:xx:xx:xx:xx:xx` into `out`.
pub fn fmt_mac(mac: &[u8; 6], out: &mut [u8; 17]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in mac.iter().enumerate() {
        out[i * 3] = HEX[usize::from(b >> 4)];
        out[i * 3 + 1] = HEX[usize::from(b & 0xf)];
        if i < 5 {
            out[i * 3 + 2] = b':';
        }
    }
}
