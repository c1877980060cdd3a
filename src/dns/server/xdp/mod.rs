//! The AF_XDP fast path for UDP (`--xdp IFACE`): an XDP
//! program on the interface hands the datagrams for the daemon's
//! addresses and port to AF_XDP sockets, whose workers answer through the
//! same `udp::Responder` as the socket path; everything else goes on to
//! the kernel.
//!
//! - `program`: the XDP program, assembled from the listen set;
//! - `bpf`: the bpf(2) calls (map, load, attach, test run);
//! - `frame`: reading a received frame and writing a reply's headers;
//! - `socket`: an AF_XDP socket, its UMEM and rings;
//! - `worker`: the loop that answers a socket's frames;
//! - `setup`: `--xdp`: the interfaces, the program attached, the sockets.

pub mod bpf;
pub mod frame;
pub mod program;
pub mod setup;
pub mod socket;
pub mod worker;

pub use setup::{MAX_PAYLOAD, XdpInterface, XdpSettings};

#[cfg(test)]
mod tests {
    use super::program::{Filter, XDP_DROP, XDP_PASS, assemble};
    use super::*;
    use std::net::SocketAddr;

    /// Root (CAP_BPF) loads programs; elsewhere the test says so and stops,
    /// unless TIMEPOOL_XDP_REQUIRED=1 asks for it (as scripts/test.sh does).
    fn may_load() -> bool {
        let required = std::env::var("TIMEPOOL_XDP_REQUIRED").is_ok_and(|v| v == "1");
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(root || !required, "TIMEPOOL_XDP_REQUIRED=1 but not root");
        if !root {
            eprintln!("not root: the XDP program is not loaded here");
        }
        root
    }

    /// A UDP datagram from `source` to `destination` as a frame.
    fn datagram(source: &str, destination: &str, payload_len: usize) -> Vec<u8> {
        let source: SocketAddr = source.parse().expect("address");
        let destination: SocketAddr = destination.parse().expect("address");
        // The reply of the reverse datagram is this datagram.
        let reverse = frame::parse(&reverse_seed(destination, source)).expect("seed");
        let mut bytes = vec![0u8; reverse.reply_header_len() + payload_len];
        let len = frame::write_reply(&reverse, &mut bytes, payload_len);
        bytes.truncate(len);
        bytes
    }

    /// The smallest frame `frame::parse` takes from `source` to
    /// `destination`, written by hand (the seed of `datagram`).
    fn reverse_seed(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let mut bytes = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let udp_len: u16 = 8 + 12;
        match (source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                bytes.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
                bytes.extend_from_slice(&(20 + udp_len).to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
                bytes.extend_from_slice(&s.ip().octets());
                bytes.extend_from_slice(&d.ip().octets());
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                bytes.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                bytes.extend_from_slice(&udp_len.to_be_bytes());
                bytes.extend_from_slice(&[17, 64]);
                bytes.extend_from_slice(&s.ip().octets());
                bytes.extend_from_slice(&d.ip().octets());
            }
            _ => panic!("one family"),
        }
        bytes.extend_from_slice(&source.port().to_be_bytes());
        bytes.extend_from_slice(&destination.port().to_be_bytes());
        bytes.extend_from_slice(&udp_len.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&[0; 12]);
        bytes
    }

    /// The kernel's verifier takes the program, and run on frames it
    /// redirects exactly the datagrams for our addresses and port (seen
    /// here as XDP_DROP: the map has no socket, and the test asks for DROP
    /// then) and passes everything else.
    #[test]
    fn the_program_redirects_only_our_datagrams() {
        if !may_load() {
            return;
        }
        let filter = Filter {
            port: 53,
            addresses: vec![
                "198.18.0.1".parse().unwrap(),
                "198.18.0.200".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            without_socket: XDP_DROP,
        };
        let map = bpf::create_socket_map(4).expect("XSKMAP");
        let loaded = bpf::load_program(&assemble(&filter, std::os::fd::AsRawFd::as_raw_fd(&map)))
            .expect("the verifier takes the program");
        let run = |frame: &[u8]| bpf::test_run(&loaded, frame).expect("test run") as i32;
        let ours = [
            datagram("198.18.0.2:4000", "198.18.0.1:53", 30),
            datagram("198.18.0.2:4000", "198.18.0.200:53", 12),
            datagram("[2001:db8::9]:4000", "[2001:db8::1]:53", 40),
        ];
        for frame in &ours {
            assert_eq!(run(frame), XDP_DROP, "ours: {frame:02x?}");
        }
        let mut fragment = ours[0].clone();
        fragment[14 + 6] = 0x20;
        let mut tcp = ours[0].clone();
        tcp[14 + 9] = 6;
        let mut options = ours[0].clone();
        options[14] = 0x46;
        let mut extension = ours[2].clone();
        extension[14 + 6] = 0; // hop-by-hop options
        // An 802.1Q tag between the MACs and the ethertype: the kernel's
        // VLAN device and the sockets serve it.
        let mut tagged = ours[0][..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&ours[0][12..]);
        let theirs = [
            datagram("198.18.0.2:4000", "198.18.0.3:53", 30),
            datagram("198.18.0.2:4000", "198.18.0.1:54", 30),
            datagram("[2001:db8::9]:4000", "[2001:db8::2]:53", 40),
            datagram("[2001:db8::9]:4000", "[2001:db8::1]:5353", 40),
            fragment,
            tcp,
            options,
            extension,
            tagged,
            ours[0][..14 + 20 + 7].to_vec(),
            ours[2][..14 + 40 + 7].to_vec(),
            vec![0xff; 14],
        ];
        for frame in &theirs {
            assert_eq!(run(frame), XDP_PASS, "not ours: {frame:02x?}");
        }
    }

    /// Over a veth pair between two namespaces the test makes (addresses
    /// from 198.18.0.0/15): the program attached natively, one AF_XDP
    /// socket on the queue, a worker echoing with the benchmark's
    /// reflector. The client's kernel takes the replies only if their
    /// addresses, ports and checksums are right; ARP for the server's
    /// address reaching the kernel shows the program passes the rest.
    #[test]
    fn a_worker_answers_over_a_veth_pair_through_af_xdp() {
        use std::os::fd::AsRawFd;
        use std::process::Command;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;

        if !may_load() {
            return;
        }
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "ip {args:?}: {status:?}"
            );
        };
        /// Deletes the client's namespace however the test ends (the
        /// server's goes with its thread, the veth pair with it).
        struct Namespace(String);
        impl Drop for Namespace {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let client_ns = format!("timepool-xdp-{}", std::process::id());
        ip(&["netns", "add", &client_ns]);
        let _namespace = Namespace(client_ns.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = {
            let stop = stop.clone();
            let client_ns = client_ns.clone();
            std::thread::spawn(move || {
                // SAFETY: unshare affects only this thread, which is ours.
                assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
                ip(&[
                    "link", "add", "tpx-s", "type", "veth", "peer", "name", "tpx-c",
                ]);
                ip(&["link", "set", "tpx-c", "netns", &client_ns]);
                ip(&["addr", "add", "198.18.0.1/24", "dev", "tpx-s"]);
                ip(&["link", "set", "tpx-s", "up"]);
                ip(&[
                    "-n",
                    &client_ns,
                    "addr",
                    "add",
                    "198.18.0.2/24",
                    "dev",
                    "tpx-c",
                ]);
                ip(&["-n", &client_ns, "link", "set", "tpx-c", "up"]);
                let name = std::ffi::CString::new("tpx-s").unwrap();
                // SAFETY: a NUL-terminated name; 0 means not found.
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                assert_ne!(ifindex, 0, "tpx-s");
                let filter = Filter {
                    port: 53,
                    addresses: vec!["198.18.0.1".parse().unwrap()],
                    without_socket: XDP_PASS,
                };
                let map = bpf::create_socket_map(1).expect("XSKMAP");
                let program = bpf::load_program(&assemble(&filter, map.as_raw_fd()))
                    .expect("the verifier takes the program");
                let _link = bpf::attach(&program, ifindex, bpf::XDP_FLAGS_DRV_MODE)
                    .expect("attached natively to the veth");
                let mut socket = socket::XdpSocket::open(
                    ifindex,
                    0,
                    socket::Sizes {
                        frames: 1024,
                        ring: 512,
                    },
                )
                .expect("AF_XDP socket");
                bpf::set_socket(&map, 0, socket.raw_fd()).expect("in the map");
                let counters = worker::XdpCounters::default();
                ready_tx.send(socket.copy_mode).unwrap();
                let mut reflector = crate::dns::server::reflector::Reflector;
                worker::serve(&mut socket, &mut reflector, &counters, &stop, || ());
                counters
            })
        };
        let copy_mode = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server ready");
        eprintln!(
            "AF_XDP in {} mode",
            if copy_mode { "copy" } else { "zero-copy" }
        );

        let client = {
            let client_ns = client_ns.clone();
            std::thread::spawn(move || {
                let path = format!("/var/run/netns/{client_ns}");
                let ns = std::fs::File::open(&path).expect("client namespace");
                // SAFETY: a namespace fd; setns affects only this thread.
                let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(entered, 0, "setns");
                let socket = std::net::UdpSocket::bind("198.18.0.2:0").expect("client socket");
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut answered = 0;
                for id in 0..20u16 {
                    let mut query = vec![0u8; 12];
                    query[0..2].copy_from_slice(&id.to_be_bytes());
                    query.extend_from_slice(&[0xab; 17]);
                    socket.send_to(&query, "198.18.0.1:53").expect("send");
                    let mut buffer = [0u8; 512];
                    // The first waits for ARP in the client's kernel.
                    if let Ok((len, from)) = socket.recv_from(&mut buffer) {
                        assert_eq!(from, "198.18.0.1:53".parse().unwrap());
                        assert_eq!(len, query.len());
                        assert_eq!(buffer[2] & 0x80, 0x80, "QR set");
                        assert_eq!(&buffer[..2], &query[..2]);
                        assert_eq!(&buffer[3..len], &query[3..]);
                        answered += 1;
                    }
                }
                answered
            })
        };
        let answered = client.join();
        stop.store(true, Ordering::Relaxed);
        let counters = server.join();
        let answered = answered.expect("client");
        let counters = counters.expect("server");
        assert_eq!(answered, 20, "answered of 20; {counters:?}");
        assert_eq!(
            counters.answered.load(Ordering::Relaxed),
            counters.received.load(Ordering::Relaxed),
            "{counters:?}"
        );
    }
}
