//! The few ioctls a tap needs: attach by name, identify an inherited fd, read the MTU and
//! turn off GRO/GSO. The MTU and ethtool requests go through a socket in the tap's own
//! network namespace, which need not be the tender's (the shim opens taps in pod namespaces).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn ifreq_name(ifr: &libc::ifreq) -> String {
    // SAFETY: the kernel NUL-terminates ifr_name (IFNAMSIZ includes the NUL).
    unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Opens `/dev/net/tun` non-blocking and attaches to the existing tap `name`
/// (`IFF_TAP | IFF_NO_PI`).
pub fn attach(name: &str) -> io::Result<OwnedFd> {
    let mut ifr = ifreq_named(name)?;
    let file = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the whole call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel creates a new device if `name` vanished in between; refuse that.
    if ifreq_name(&ifr) != name {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    Ok(file.into())
}

use std::os::unix::fs::OpenOptionsExt;

/// Checks that `fd` is a tap without packet information, makes it non-blocking and returns
/// its interface name.
pub fn identify(fd: RawFd) -> io::Result<String> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one ifreq, which lives for the whole call; a non-tun fd
    // gets EBADFD/EINVAL/ENOTTY.
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut ifr) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("not a tap file descriptor ({e})"),
        ));
    }
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = i32::from(unsafe { ifr.ifr_ifru.ifru_flags });
    if flags & libc::IFF_TAP == 0 || flags & libc::IFF_NO_PI == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a tap opened with IFF_TAP|IFF_NO_PI",
        ));
    }
    // SAFETY: F_GETFL/F_SETFL take and return plain integers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ifreq_name(&ifr))
}

/// An AF_INET datagram socket in the network namespace of the tap `tap_fd`.
fn socket_in_tap_netns(tap_fd: RawFd) -> io::Result<OwnedFd> {
    let new_socket = || {
        socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)
    };
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new fd or -1.
    let ns = unsafe { libc::ioctl(tap_fd, libc::TUNGETDEVNETNS) };
    if ns < 0 {
        // Old kernels or no CAP_NET_ADMIN: the tap can only be one we could see by name.
        return new_socket();
    }
    // SAFETY: the ioctl returned a fresh fd that nothing else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    let own = File::open("/proc/self/ns/net")?;
    if same_file(&own, &ns)? {
        return new_socket();
    }
    setns(&ns, CloneFlags::CLONE_NEWNET)?;
    let sock = new_socket();
    // The tender is single-threaded: switching back restores everything.
    setns(&own, CloneFlags::CLONE_NEWNET)?;
    sock
}

fn same_file(a: &File, b: &OwnedFd) -> io::Result<bool> {
    let sa = nix::sys::stat::fstat(a)?;
    let sb = nix::sys::stat::fstat(b)?;
    Ok(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
}

/// Reads the MTU of the tap and switches GRO/GSO off (errors of the latter are ignored,
/// as upstream does).
pub fn mtu_and_offloads(tap_fd: RawFd, name: &str) -> io::Result<u32> {
    let sock = socket_in_tap_netns(tap_fd)?;
    let mut ifr = ifreq_named(name)?;
    // SAFETY: SIOCGIFMTU fills ifr_mtu of one ifreq, which lives for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    for cmd in [ETHTOOL_SGRO, ETHTOOL_SGSO] {
        let mut value = EthtoolValue { cmd, data: 0 };
        let mut ifr = ifreq_named(name)?;
        ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        // SAFETY: SIOCETHTOOL reads the ethtool_value `ifru_data` points to, which lives
        // for the whole call. Failure only leaves offloads on.
        unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
    }
    u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether the interface `name` exists (in the tender's namespace) and is up or running.
pub fn check_up(name: &str) -> io::Result<()> {
    let addrs = nix::ifaddrs::getifaddrs()?;
    let mut found = false;
    for a in addrs.filter(|a| a.interface_name == name) {
        found = true;
        use nix::net::if_::InterfaceFlags as F;
        // Upstream tests `flags & (IFF_UP | IFF_RUNNING)`: either will do. A tap nobody has
        // open has no carrier, so it is never RUNNING before the tender attaches it.
        if a.flags.intersects(F::IFF_UP | F::IFF_RUNNING) {
            return Ok(());
        }
    }
    Err(io::Error::from_raw_os_error(if found {
        libc::ENETDOWN
    } else {
        libc::ENOENT
    }))
}
