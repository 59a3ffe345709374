//! Connecting a unikernel to its container's network: a tap per guest NIC, made inside the
//! container's network namespace and joined to one of the namespace's interfaces (the one CNI,
//! nerdctl or the CRI set up) by tc ingress redirection both ways, as urunc and runnc do.
//!
//! The guest takes over the interface's identity (IPv4 address, MAC, gateway): every frame that
//! arrives on the interface goes to the tap, and so to the guest; every frame the guest writes
//! leaves through the interface. Everything is done over rtnetlink, from a thread that has
//! entered the namespace, so the shim's own threads never change namespace.
//!
//! The tap is not persistent: it disappears when the last fd on it (the tender's) closes.
//! What stays behind on the interface is its ingress qdisc, which [`detach`] removes.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle};
use netlink_packet_route::AddressFamily;
use nix::sched::{setns, CloneFlags};
use rtnetlink::{Handle, LinkUnspec};

/// Prefix of the taps this module makes (`nbl` + part of the container id).
pub const TAP_PREFIX: &str = "nbl";

/// Errors joining a guest to its network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The namespace path could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Namespace {
        /// The path from the OCI spec.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The namespace has fewer usable interfaces than the guest has NICs.
    #[error(
        "the unikernel declares {wanted} network device(s) but the network namespace {ns} has \
         {found} usable interface(s) (up, not loopback, with an IPv4 address){names}"
    )]
    NotEnoughInterfaces {
        /// Namespace shown to the user.
        ns: String,
        /// NICs the guest declares.
        wanted: usize,
        /// Interfaces found.
        found: usize,
        /// Their names, if any.
        names: String,
    },
    /// The interface already redirects to a tap that still exists (another guest uses it).
    #[error("interface {0} is already connected to another unikernel's tap")]
    Busy(String),
    /// A netlink request failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// The request.
        what: String,
        /// The cause.
        source: rtnetlink::Error,
    },
    /// Creating the tap failed.
    #[error("creating tap {name}: {source}")]
    Tap {
        /// Tap name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The helper thread failed.
    #[error("network setup thread: {0}")]
    Thread(String),
}

/// What one guest NIC is connected to.
#[derive(Debug)]
pub struct GuestNic {
    /// The tap, open, to hand to the tender as `--net:NAME=@FD`.
    pub tap: OwnedFd,
    /// The tap's name.
    pub tap_name: String,
    /// The interface it is joined to.
    pub iface: String,
    /// The interface's IPv4 address and prefix length, which the guest takes over.
    pub ipv4: (Ipv4Addr, u8),
    /// The default gateway through that interface, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The interface's MAC, which the guest takes over.
    pub mac: [u8; 6],
    /// The interface's MTU.
    pub mtu: u32,
}

impl GuestNic {
    /// The MAC as `xx:xx:xx:xx:xx:xx`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// An interface of the namespace that can carry a guest.
#[derive(Debug, Clone)]
struct Candidate {
    index: u32,
    name: String,
    mac: [u8; 6],
    mtu: u32,
    ipv4: (Ipv4Addr, u8),
}

/// The tap name for NIC `nic` of container `id`: at most 15 bytes, as IFNAMSIZ allows.
pub fn tap_name(id: &str, nic: usize) -> String {
    let clean: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let suffix = if nic == 0 {
        String::new()
    } else {
        format!("-{nic}")
    };
    let room = 15 - TAP_PREFIX.len() - suffix.len();
    format!("{TAP_PREFIX}{}{suffix}", &clean[..clean.len().min(room)])
}

/// Runs `f` with an rtnetlink handle inside the namespace at `netns`, on a thread of its own.
fn in_netns<T, F, Fut>(netns: &Path, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let ns_err = |source| NetError::Namespace {
        path: netns.to_path_buf(),
        source,
    };
    let ns = File::open(netns).map_err(ns_err)?;
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Namespace {
            path,
            source: e.into(),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NetError::Thread(e.to_string()))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| NetError::Thread(format!("netlink socket: {e}")))?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        })
    })
    .join()
    .map_err(|_| NetError::Thread("panicked".into()))?
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

async fn links(handle: &Handle) -> Result<Vec<LinkMessage>, NetError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))
}

fn link_name(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

async fn candidates(handle: &Handle) -> Result<Vec<Candidate>, NetError> {
    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let mut out = Vec::new();
    for l in links(handle).await? {
        let name = link_name(&l);
        let flags = l.header.flags;
        if flags.contains(LinkFlags::Loopback)
            || !flags.contains(LinkFlags::Up)
            || name.starts_with(TAP_PREFIX)
        {
            continue;
        }
        let ipv4 = addrs
            .iter()
            .filter(|a| a.header.index == l.header.index && a.header.family == AddressFamily::Inet)
            .find_map(|a| {
                a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Address(std::net::IpAddr::V4(ip)) => {
                        Some((*ip, a.header.prefix_len))
                    }
                    _ => None,
                })
            });
        let Some(ipv4) = ipv4 else { continue };
        let mut mac = [0u8; 6];
        let mut mtu = 1500;
        for a in &l.attributes {
            match a {
                LinkAttribute::Address(m) if m.len() == 6 => mac.copy_from_slice(m),
                LinkAttribute::Mtu(m) => mtu = *m,
                _ => {}
            }
        }
        out.push(Candidate {
            index: l.header.index,
            name,
            mac,
            mtu,
            ipv4,
        });
    }
    out.sort_by_key(|c| c.index);
    Ok(out)
}

async fn default_gateway(handle: &Handle, oif: u32) -> Result<Option<Ipv4Addr>, NetError> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(req)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes"))?;
    Ok(routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0)
        .filter(|r| r.attributes.contains(&RouteAttribute::Oif(oif)))
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            })
        }))
}

/// Opens `/dev/net/tun` and creates the (non-persistent) tap `name` in this thread's namespace.
fn create_tap(name: &str) -> Result<OwnedFd, NetError> {
    let err = |source| NetError::Tap {
        name: name.to_string(),
        source,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(err)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq that outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(file.into())
}

/// Whether `index` has an ingress qdisc.
async fn has_ingress(handle: &Handle, index: u32) -> Result<bool, NetError> {
    let qdiscs: Vec<_> = handle
        .qdisc()
        .get()
        .index(index as i32)
        .ingress()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list qdiscs"))?;
    Ok(qdiscs.iter().any(|q| {
        q.header.index == index as i32
            && q.header.parent == TcHandle::INGRESS
            && q.attributes.contains(&TcAttribute::Kind("ingress".into()))
    }))
}

async fn del_ingress(handle: &Handle, index: u32) -> Result<(), NetError> {
    let mut req = handle.qdisc().del(index as i32);
    req.message_mut().header.parent = TcHandle::INGRESS;
    req.message_mut().header.handle = TcHandle::from(0xffff_0000);
    req.execute().await.map_err(nl("delete ingress qdisc"))
}

/// `tc qdisc add dev FROM ingress; tc filter add dev FROM parent ffff: protocol all u32 match
/// u8 0 0 action mirred egress redirect dev TO`.
async fn redirect(handle: &Handle, from: u32, to: u32, what: &str) -> Result<(), NetError> {
    handle
        .qdisc()
        .add(from as i32)
        .ingress()
        .execute()
        .await
        .map_err(nl(format!("add ingress qdisc to {what}")))?;
    handle
        .traffic_filter(from as i32)
        .add()
        .parent(0xffff_0000)
        .protocol(0x0003u16.to_be())
        .redirect(to)
        .map_err(nl(format!("build redirect filter for {what}")))?
        .execute()
        .await
        .map_err(nl(format!("add redirect filter to {what}")))
}

/// Joins `nics` guest NICs of container `id` to the first `nics` usable interfaces of the
/// namespace at `netns` (in interface index order). On error nothing is left behind.
pub fn attach(netns: &Path, id: &str, nics: usize) -> Result<Vec<GuestNic>, NetError> {
    let id = id.to_string();
    let ns_shown = netns.display().to_string();
    in_netns(netns, move |handle| async move {
        let cands = candidates(&handle).await?;
        if cands.len() < nics {
            let names = if cands.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    cands
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(NetError::NotEnoughInterfaces {
                ns: ns_shown,
                wanted: nics,
                found: cands.len(),
                names,
            });
        }
        let mut done: Vec<GuestNic> = Vec::new();
        let mut result = Ok(());
        for (i, c) in cands.into_iter().take(nics).enumerate() {
            match attach_one(&handle, &id, i, c).await {
                Ok(nic) => done.push(nic),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            // Undo: the taps vanish when `done` drops; the interfaces lose their qdiscs.
            for nic in &done {
                if let Ok(Some(idx)) = index_of(&handle, &nic.iface).await {
                    let _ = del_ingress(&handle, idx).await;
                }
            }
            return Err(e);
        }
        Ok(done)
    })
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    Ok(links(handle)
        .await?
        .iter()
        .find(|l| link_name(l) == name)
        .map(|l| l.header.index))
}

async fn attach_one(
    handle: &Handle,
    id: &str,
    nic: usize,
    c: Candidate,
) -> Result<GuestNic, NetError> {
    if has_ingress(handle, c.index).await? {
        // Left over by a guest whose cleanup never ran (its tap died with it), or in use.
        let taps_alive = links(handle)
            .await?
            .iter()
            .any(|l| link_name(l).starts_with(TAP_PREFIX));
        if taps_alive {
            return Err(NetError::Busy(c.name.clone()));
        }
        del_ingress(handle, c.index).await?;
    }
    let gateway = default_gateway(handle, c.index).await?;
    let name = tap_name(id, nic);
    let tap = create_tap(&name)?;
    let tap_index = index_of(handle, &name)
        .await?
        .ok_or_else(|| NetError::Tap {
            name: name.clone(),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(tap_index)
                .mtu(c.mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("set {name} up with MTU {}", c.mtu)))?;
    redirect(handle, tap_index, c.index, &name).await?;
    if let Err(e) = redirect(handle, c.index, tap_index, &c.name).await {
        let _ = del_ingress(handle, c.index).await;
        return Err(e);
    }
    Ok(GuestNic {
        tap,
        tap_name: name,
        iface: c.name,
        ipv4: c.ipv4,
        gateway,
        mac: c.mac,
        mtu: c.mtu,
    })
}

/// Undoes [`attach`] for the interfaces `ifaces` of the namespace at `netns`: removes their
/// ingress qdiscs (and with them the redirect filters). Taps go by themselves when their last
/// fd closes; a leftover tap of this container (e.g. a tender still alive) is deleted too.
/// A namespace that is gone already is not an error.
pub fn detach(netns: &Path, id: &str, ifaces: &[String]) -> Result<(), NetError> {
    if !netns.exists() {
        return Ok(());
    }
    let ifaces = ifaces.to_vec();
    let id = id.to_string();
    in_netns(netns, move |handle| async move {
        for l in links(&handle).await? {
            let name = link_name(&l);
            let ours = (0..64).any(|i| tap_name(&id, i) == name);
            if ifaces.contains(&name) && has_ingress(&handle, l.header.index).await? {
                del_ingress(&handle, l.header.index).await?;
            }
            if ours {
                let h = handle.clone();
                let _ = h.link().del(l.header.index).execute().await;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(tap_name(id, 0), "nbl0123456789ab");
        assert_eq!(tap_name(id, 1), "nbl0123456789-1");
        assert!(tap_name(id, 1).len() <= 15, "{}", tap_name(id, 1));
        assert_eq!(tap_name("my_ctr.1", 0), "nblmyctr1");
    }
}
