//! Private network namespaces with taps for tests and benchmarks: created with `ip netns add`,
//! never touching the host's own interfaces, and deleted (with everything inside) on drop.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace made for one test.
pub struct NetNs {
    name: String,
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl NetNs {
    /// Creates a namespace `nbl-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!(
            "nbl-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (as in `/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates tap `tap` inside the namespace with host-side address `cidr` (e.g.
    /// `10.77.0.1/24`, or none) and brings it up.
    pub fn add_tap(&self, tap: &str, cidr: Option<&str>) {
        ip(&["-n", &self.name, "tuntap", "add", tap, "mode", "tap"]);
        if let Some(c) = cidr {
            ip(&["-n", &self.name, "addr", "add", c, "dev", tap]);
        }
        ip(&["-n", &self.name, "link", "set", tap, "up"]);
    }

    /// Connects this namespace to `peer` with a veth pair: `local` here with `local_cidr`,
    /// `remote` there with `remote_cidr`, both up (what a CNI bridge plugin gives a pod).
    pub fn veth_to(
        &self,
        local: &str,
        local_cidr: &str,
        peer: &NetNs,
        remote: &str,
        remote_cidr: &str,
    ) {
        ip(&[
            "-n", &self.name, "link", "add", local, "type", "veth", "peer", "name", remote,
            "netns", &peer.name,
        ]);
        for (ns, dev, cidr) in [(self, local, local_cidr), (peer, remote, remote_cidr)] {
            ip(&["-n", &ns.name, "addr", "add", cidr, "dev", dev]);
            ip(&["-n", &ns.name, "link", "set", dev, "up"]);
        }
    }

    /// Sets the MTU of `dev`.
    pub fn set_mtu(&self, dev: &str, mtu: u32) {
        ip(&[
            "-n",
            &self.name,
            "link",
            "set",
            dev,
            "mtu",
            &mtu.to_string(),
        ]);
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has joined the namespace (only that thread moves).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            setns(ns, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// Opens tap `tap` of the namespace from this process, as the shim does for `--net:@FD`.
    /// The fd is inheritable (no `FD_CLOEXEC`).
    pub fn open_tap(&self, tap: &str) -> OwnedFd {
        let tap = tap.to_string();
        self.run_in(move || open_tap_here(&tap).expect("open tap"))
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_socket(&self) -> UdpSocket {
        self.run_in(|| {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind udp");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
    }

    /// `ping` inside the namespace; returns (transmitted, received) and the raw output.
    pub fn ping(&self, addr: Ipv4Addr, extra: &[&str]) -> (u64, u64, String) {
        let out = self
            .command("ping")
            .args(extra)
            .arg(addr.to_string())
            .output()
            .expect("run ping");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let (tx, rx) = parse_ping(&text).unwrap_or((0, 0));
        (tx, rx, text)
    }

    /// Interface names in the namespace.
    pub fn links(&self) -> Vec<String> {
        let out = ip(&["-n", &self.name, "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Opens `/dev/net/tun` and attaches to the existing tap `name` in the caller's namespace.
fn open_tap_here(name: &str) -> io::Result<OwnedFd> {
    let file = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq that outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = file.as_raw_fd();
    // SAFETY: F_SETFD on an fd we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = std::os::fd::IntoRawFd::into_raw_fd(file);
    // SAFETY: `raw` came from into_raw_fd, so it is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Parses "N packets transmitted, M received" from ping's summary.
pub fn parse_ping(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let tx = nums.next()?.parse().ok()?;
    let rx = nums.next()?.parse().ok()?;
    Some((tx, rx))
}

/// Sends `payload` to `to` over `sock` and waits for the same bytes back.
pub fn udp_echo(sock: &UdpSocket, to: SocketAddr, payload: &[u8]) -> io::Result<bool> {
    sock.send_to(payload, to)?;
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf)?;
    Ok(from == to && &buf[..n] == payload)
}
