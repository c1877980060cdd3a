//! `--xdp IFACE[,IFACE]`: find each interface and its receive queues,
//! load the program for the daemon's addresses and port, attach it
//! (native mode where the driver has it, generic otherwise) and open one
//! AF_XDP socket per queue, entered in the program's XSKMAP. What this
//! returns is everything the workers need; dropping it detaches the
//! program (the BPF link closes) and frees the sockets.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::bpf;
use super::program::{Filter, XDP_PASS, assemble};
use super::socket::{Sizes, XdpSocket};
use super::worker::MAX_FRAME;

/// The ways `--xdp` asks to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// The interfaces to attach to (by name).
    pub interfaces: Vec<String>,
    /// When XDP cannot be set up, serve on sockets alone with a warning
    /// instead of refusing to start (`--xdp-fallback`).
    pub fallback: bool,
    /// Slots per ring of each socket (`--xdp-ring-size`); twice as many
    /// frames in its UMEM.
    pub ring_size: u32,
}

/// The largest UDP payload an XDP reply carries: an IPv6 reply in a
/// 1514-byte Ethernet frame. The socket path sends up to
/// `--edns-max-payload`; with `--xdp` that may not be larger, so both
/// paths answer the same query with the same bytes (an XDP reply is never
/// fragmented).
pub const MAX_PAYLOAD: usize = MAX_FRAME - 14 - 40 - 8;

/// One interface served through AF_XDP.
pub struct XdpInterface {
    pub name: String,
    pub ifindex: u32,
    /// The largest IP packet the interface sends.
    pub mtu: u32,
    /// "native" or "generic".
    pub mode: &'static str,
    /// One socket per receive queue, the queue's index with it; taken by
    /// the workers.
    pub sockets: Vec<(u32, XdpSocket)>,
    // Kept open while serving: the link holds the program on the
    // interface; the map and program are freed with the link.
    _link: OwnedFd,
    _program: OwnedFd,
    _map: OwnedFd,
}

/// Set up every interface of `settings` for the UDP addresses the daemon
/// bound (`bound`: one port for all). An error names the interface and
/// the step that failed.
pub fn attach_all(
    settings: &XdpSettings,
    bound: &[SocketAddr],
) -> Result<Vec<XdpInterface>, String> {
    let filter = filter_for(bound)?;
    let mut interfaces = Vec::new();
    for name in &settings.interfaces {
        let interface = attach_interface(name, &filter, settings.ring_size).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                "; XDP needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK (scripts/timepool-dns-xdp.conf)"
            } else {
                ""
            };
            format!("--xdp {name}: {e}{hint}")
        })?;
        interfaces.push(interface);
    }
    Ok(interfaces)
}

/// The program's filter: the bound addresses and their common port.
fn filter_for(bound: &[SocketAddr]) -> Result<Filter, String> {
    let Some(first) = bound.first() else {
        return Err("--xdp needs a --listen address".into());
    };
    if let Some(other) = bound.iter().find(|a| a.port() != first.port()) {
        return Err(format!(
            "--xdp needs one port for every --listen address ({first} and {other} differ)"
        ));
    }
    // A wildcard would redirect every datagram to the port, those for
    // other hosts (forwarded to containers, say) too, and answer them in
    // their name: the socket path answers only addresses of this host.
    if let Some(wildcard) = bound.iter().find(|a| a.ip().is_unspecified()) {
        return Err(format!(
            "--xdp needs the addresses to serve listed, not the wildcard {wildcard} (e.g. --listen 192.0.2.53:53,[2001:db8::53]:53)"
        ));
    }
    Ok(Filter {
        port: first.port(),
        addresses: bound.iter().map(|a| a.ip()).collect(),
        // A queue without a socket (one added after start) is served by the
        // kernel's sockets rather than dropped.
        without_socket: XDP_PASS,
    })
}

/// The interface's MTU (SIOCGIFMTU).
fn mtu(name: &str) -> io::Result<u32> {
    let mut request = interface_request(name)?;
    let socket = ioctl_socket()?;
    // SAFETY: SIOCGIFMTU reads the name and writes the MTU into the
    // request, which lives for the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut request) };
    if result != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!("its MTU (SIOCGIFMTU): {error}"),
        ));
    }
    // SAFETY: SIOCGIFMTU filled the union's MTU member.
    Ok(unsafe { request.ifr_ifru.ifru_mtu }.max(0) as u32)
}

/// An `ifreq` naming the interface `name`, the rest zero.
fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: zero is a valid ifreq (a name and a union of plain data).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// A socket for interface ioctls, in this thread's network namespace.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by socket(2), owned by no one.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

fn attach_interface(name: &str, filter: &Filter, ring_size: u32) -> io::Result<XdpInterface> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    // SAFETY: a NUL-terminated name; 0 means not found.
    let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such interface"));
    }
    let queues = receive_queues(name)?;
    let mtu = mtu(name)?;
    let map = bpf::create_socket_map(queues)?;
    let program = bpf::load_program(&assemble(filter, map.as_raw_fd()))?;
    // Native mode first; the generic (skb) mode works on every driver.
    let (link, mode) = match bpf::attach(&program, ifindex, bpf::XDP_FLAGS_DRV_MODE) {
        Ok(link) => (link, "native"),
        Err(native) => match bpf::attach(&program, ifindex, bpf::XDP_FLAGS_SKB_MODE) {
            Ok(link) => {
                tracing::info!(interface = name, error = %native, "no native XDP on this interface; generic mode");
                (link, "generic")
            }
            Err(generic) => {
                let taken =
                    |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST));
                let hint = if taken(&native) || taken(&generic) {
                    " (another XDP program holds the interface: `ip link show dev IFACE` names it; one attached by netlink, e.g. Knot's, goes with `ip link set dev IFACE xdp off`, one held by a link with its process)"
                } else {
                    ""
                };
                return Err(io::Error::new(
                    generic.kind(),
                    format!(
                        "cannot attach the XDP program: native: {native}; generic: {generic}{hint}"
                    ),
                ));
            }
        },
    };
    let mut sockets = Vec::new();
    for queue in 0..queues {
        let socket = XdpSocket::open(
            ifindex,
            queue,
            Sizes {
                frames: 2 * ring_size,
                ring: ring_size,
            },
        )?;
        bpf::set_socket(&map, queue, socket.raw_fd())?;
        sockets.push((queue, socket));
    }
    Ok(XdpInterface {
        name: name.to_owned(),
        ifindex,
        mtu,
        mode,
        sockets,
        _link: link,
        _program: program,
        _map: map,
    })
}

/// The interface's receive queues, each of which gets a socket (a
/// datagram arrives on the queue the card's hash or the sender chose),
/// from ethtool's channel count (`ethtool -l`): the receive-only plus the
/// combined channels. A driver without channel settings has one queue.
/// Asked through a socket rather than /sys/class/net, which shows the
/// interfaces of the namespace sysfs was mounted in, not necessarily ours.
fn receive_queues(name: &str) -> io::Result<u32> {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    /// `struct ethtool_channels` (linux/ethtool.h).
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    let mut channels = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_data = (&mut channels as *mut Channels).cast();
    let socket = ioctl_socket()?;
    // SAFETY: SIOCETHTOOL reads the name and writes `channels` through the
    // pointer, both live for the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
    if result != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(1);
        }
        return Err(io::Error::new(
            error.kind(),
            format!("its channel count (ETHTOOL_GCHANNELS): {error}"),
        ));
    }
    Ok(channels
        .rx_count
        .saturating_add(channels.combined_count)
        .max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_takes_the_bound_addresses_and_needs_one_port() {
        let bound: Vec<SocketAddr> = vec![
            "198.18.0.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        let filter = filter_for(&bound).expect("one port");
        assert_eq!(filter.port, 53);
        assert_eq!(filter.addresses.len(), 2);
        let wildcard: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        let error = filter_for(&wildcard).expect_err("a wildcard");
        assert!(error.contains("wildcard"), "{error}");
        let two_ports: Vec<SocketAddr> = vec![
            "198.18.0.1:53".parse().unwrap(),
            "198.18.0.2:5353".parse().unwrap(),
        ];
        let error = filter_for(&two_ports).expect_err("two ports");
        assert!(error.contains("one port"), "{error}");
        assert!(filter_for(&[]).is_err());
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let settings = XdpSettings {
            interfaces: vec!["tp-nosuch0".into()],
            fallback: false,
            ring_size: 4096,
        };
        let error = attach_all(&settings, &["127.0.0.1:53".parse().unwrap()])
            .err()
            .expect("no such interface");
        assert!(
            error.contains("--xdp tp-nosuch0") && error.contains("no such interface"),
            "{error}"
        );
    }

    #[test]
    fn the_loopback_has_a_receive_queue() {
        assert!(receive_queues("lo").is_ok_and(|n| n >= 1));
    }
}
