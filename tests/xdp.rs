//! `--xdp` through the daemon: a veth pair between a namespace the test
//! makes for the server (the daemon runs there, in this process) and one
//! for the client (addresses from the benchmarking ranges 198.18.0.0/15
//! and 2001:2::/48, inside those namespaces only). The same queries are
//! asked of the daemon with XDP and then of the same daemon on sockets
//! alone, and the replies must be the same; TCP still answers through the
//! kernel while XDP runs; a hundred garbage frames are dropped and
//! counted; a second daemon on the same interface is refused, or serves on
//! sockets with `--xdp-fallback`.
//!
//! The XDP workers allocate nothing per frame: a counting global
//! allocator counts what threads named `timepool-xdp-N` allocate while
//! they answer, rate-limit and drop garbage.
//!
//! Needs root (namespaces, BPF); skipped with a message elsewhere, unless
//! TIMEPOOL_XDP_REQUIRED=1 (scripts/test.sh, CI) makes that a failure.

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use support::thread_alloc::ThreadAllocator;
use support::{Ask, parse_reply, query, tcp_exchange};
use timepool::dns::answer::AnswerConfig;
use timepool::dns::rrl::RrlSettings;
use timepool::dns::server::xdp::XdpSettings;
use timepool::dns::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};

#[global_allocator]
static ALLOCATOR: ThreadAllocator = ThreadAllocator::new(b"timepool-xdp");

const A: u16 = 1;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SERVER_V4: &str = "198.18.10.1";
const CLIENT_V4: &str = "198.18.10.2";
/// The client's second address, for the rate-limit burst: another /24,
/// so the burst's limit does not reach the client's other queries.
const FLOODER_V4: &str = "198.18.11.3";
/// The garbage frames' source (a third /24, for the same reason).
const GARBAGE_V4: &str = "198.18.12.9";
const SERVER_V6: &str = "2001:2::1";
const CLIENT_V6: &str = "2001:2::2";
const SERVER_LINK: &str = "tpxs";
const CLIENT_LINK: &str = "tpxc";
/// ECS addresses the test GeoIP database puts in Germany and France.
const GERMANY: &str = "85.214.1.0";
const FRANCE: &str = "85.215.1.0";

fn may_run() -> bool {
    let required = std::env::var("TIMEPOOL_XDP_REQUIRED").is_ok_and(|v| v == "1");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Root in a container may still be refused namespaces: try one.
    let probe = format!("tpx-probe-{}", std::process::id());
    let namespaces = root
        && Command::new("ip")
            .args(["netns", "add", &probe])
            .status()
            .is_ok_and(|s| s.success());
    if namespaces {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
        return true;
    }
    assert!(
        !required,
        "TIMEPOOL_XDP_REQUIRED=1 but not root, no `ip` (iproute2) or no network namespaces"
    );
    eprintln!("skipped: XDP needs root, iproute2 and network namespaces (and BPF)");
    false
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "ip {args:?}: {status:?}"
    );
}

/// The client's namespace, deleted however the test ends (the server's
/// is its thread's and goes with it, the veth pair with it).
struct ClientNamespace(String);

impl Drop for ClientNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Run `body` on a thread in the client's namespace.
fn in_client<T: Send + 'static>(namespace: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{namespace}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("client namespace");
        // SAFETY: a namespace descriptor; setns affects only this thread.
        let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns {path}");
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// On the calling thread: a new network namespace (the server's), a
/// veth pair to the client's namespace `client`, addresses on both ends.
fn make_the_pair(client: &str) {
    // SAFETY: unshare affects only this thread, which the test owns.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link",
        "add",
        SERVER_LINK,
        "type",
        "veth",
        "peer",
        "name",
        CLIENT_LINK,
        "netns",
        client,
    ]);
    ip(&[
        "addr",
        "add",
        &format!("{SERVER_V4}/24"),
        "dev",
        SERVER_LINK,
    ]);
    ip(&[
        "-6",
        "addr",
        "add",
        &format!("{SERVER_V6}/64"),
        "dev",
        SERVER_LINK,
        "nodad",
    ]);
    ip(&["link", "set", SERVER_LINK, "up"]);
    ip(&["route", "add", "198.18.11.0/24", "dev", SERVER_LINK]);
    for address in [CLIENT_V4, FLOODER_V4] {
        ip(&[
            "-n",
            client,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            CLIENT_LINK,
        ]);
    }
    ip(&[
        "-n",
        client,
        "-6",
        "addr",
        "add",
        &format!("{CLIENT_V6}/64"),
        "dev",
        CLIENT_LINK,
        "nodad",
    ]);
    ip(&["-n", client, "link", "set", CLIENT_LINK, "up"]);
    ip(&["-n", client, "link", "set", "lo", "up"]);
}

/// A snapshot whose every answer is decided (each label has at most
/// max_hosts addresses of a family, counting the parents that top it
/// up), so that two daemons give the same sets: Germany and France by
/// ECS, the global zone for the client's own (benchmarking) address.
fn snapshot(dir: &std::path::Path) -> std::path::PathBuf {
    let example: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::example_snapshot()).expect("example"))
            .expect("example json");
    let mut origin = example["origins"][0].clone();
    origin["ipv6_everywhere"] = serde_json::json!(true);
    let addresses = [
        "11.1.0.1",
        "11.1.0.2",
        "11.1.0.3",
        "11.1.0.4",
        "11.2.0.1",
        "11.2.0.2",
        "11.2.0.3",
        "11.2.0.4",
        "2a00:1000:1::1",
        "2a00:1000:1::2",
        "2a00:1000:1::3",
        "2a00:1000:1::4",
        "2a00:1000:2::1",
    ];
    let servers: Vec<serde_json::Value> = (addresses.iter().enumerate())
        .map(|(i, address)| serde_json::json!({"id": i + 1, "address": address, "weight": 1000 * (i + 1)}))
        .collect();
    let document = serde_json::json!({
        "version": 1,
        "serial": 7,
        "generated": "2026-12-05T00:00:00Z",
        "origins": [origin],
        "servers": servers,
        "zones": {
            "@": {"servers": [1, 2, 5, 6, 9, 13]},
            "europe": {"parent": "@", "servers": [3, 4, 7, 8, 10, 11]},
            "de": {"parent": "europe", "servers": [1, 2, 3, 4, 9, 10, 11, 12]},
            "fr": {"parent": "europe", "servers": [5, 6, 7, 8, 13]},
        },
        "aliases": {},
    });
    let path = dir.join("snapshot.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).expect("write snapshot");
    timepool::dns::zone::load_file(&path).expect("the test snapshot is valid");
    path
}

fn config(snapshot: &std::path::Path, xdp: Option<XdpSettings>, port: u16) -> DnsConfig {
    DnsConfig {
        listen: vec![
            (SERVER_V4.parse::<IpAddr>().unwrap(), port).into(),
            (SERVER_V6.parse::<IpAddr>().unwrap(), port).into(),
        ],
        threads: 1,
        pin_workers: false,
        snapshot: SnapshotSource::File(snapshot.to_path_buf()),
        trust: Default::default(),
        metrics_listen: None,
        cookie_secret_file: None,
        rrl: Some(RrlSettings {
            slip: 2,
            ..RrlSettings::at_rate(40)
        }),
        xdp,
        geoip: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb"),
        ),
        reload_interval: Duration::from_secs(3600),
        answer: AnswerConfig {
            // Lets a small EDNS size show a truncated answer.
            edns_min_payload: 64,
            public_debug: true,
            ..AnswerConfig::default()
        },
        udp: UdpSettings::default(),
        tcp: TcpSettings::default(),
    }
}

fn xdp(fallback: bool) -> Option<XdpSettings> {
    Some(XdpSettings {
        interfaces: vec![SERVER_LINK.into()],
        fallback,
        // Smaller than the default (4096), which the benchmark runs.
        ring_size: 512,
    })
}

/// The queries of the comparison: (client address, server address, query).
fn queries(port: u16) -> Vec<(IpAddr, SocketAddr, Vec<u8>)> {
    let v4 = |a: &str| a.parse::<IpAddr>().unwrap();
    let server4: SocketAddr = (v4(SERVER_V4), port).into();
    let server6: SocketAddr = (v4(SERVER_V6), port).into();
    let ecs = |address: &str, id: u16| Ask {
        id,
        subnet: Some((24, v4(address))),
        ..Ask::edns(1232)
    };
    let mut list = Vec::new();
    for (server, client) in [(server4, v4(CLIENT_V4)), (server6, v4(CLIENT_V6))] {
        let asks = [
            ("pool.ntp.org", A, Ask::default()),
            ("pool.ntp.org", AAAA, Ask::edns(1232)),
            ("pool.ntp.org", A, ecs(GERMANY, 1)),
            ("0.pool.ntp.org", AAAA, ecs(GERMANY, 2)),
            ("pool.ntp.org", A, ecs(FRANCE, 3)),
            ("pool.ntp.org", AAAA, ecs(FRANCE, 4)),
            ("europe.pool.ntp.org", A, Ask::edns(1232)),
            ("de.pool.ntp.org", AAAA, Ask::default()),
            ("_country.pool.ntp.org", TXT, ecs(GERMANY, 5)),
            ("_country.pool.ntp.org", TXT, Ask::default()),
            ("nosuch.pool.ntp.org", A, Ask::edns(1232)),
            ("example.com", A, Ask::default()),
            ("pool.ntp.org", 6, Ask::default()),
            // Truncated: 80 bytes cannot hold four AAAA records.
            ("de.pool.ntp.org", AAAA, Ask::edns(80)),
            (
                "pool.ntp.org",
                A,
                Ask {
                    cookie: Some(([7; 8], Vec::new())),
                    nsid: true,
                    ..Ask::edns(1232)
                },
            ),
        ];
        for (name, rtype, ask) in asks {
            list.push((client, server, query(name, rtype, &ask)));
        }
    }
    // A query the answer path refuses to parse: FORMERR.
    let mut bad = query("pool.ntp.org", A, &Ask::default());
    bad[5] = 2; // two questions, one present
    list.push((v4(CLIENT_V4), server4, bad));
    list
}

/// A reply as compared: everything `domain` reads, the answer's records
/// sorted (their order is random), the server cookie's bytes blanked (its
/// timestamp and secret differ between the two daemons; its length stays).
fn canonical(bytes: &[u8]) -> String {
    let mut reply = parse_reply(bytes);
    reply.answer.sort_by(|a, b| a.data.cmp(&b.data));
    if let Some(edns) = &mut reply.edns
        && let Some((_, server)) = &mut edns.cookie
    {
        server.fill(0);
    }
    format!("{reply:?}")
}

/// Ask every query from the client's namespace; each reply canonical, or
/// "no reply".
fn ask_all(client_ns: &str, port: u16) -> Vec<String> {
    let list = queries(port);
    in_client(client_ns, move || {
        list.iter()
            .map(|(client, server, packet)| {
                let socket = UdpSocket::bind((*client, 0)).expect("client socket");
                socket
                    .set_read_timeout(Some(Duration::from_secs(3)))
                    .unwrap();
                socket.send_to(packet, server).expect("send");
                let mut buffer = [0u8; 4096];
                match socket.recv_from(&mut buffer) {
                    Ok((len, from)) => {
                        assert_eq!(&from, server, "the reply comes from the address asked");
                        canonical(&buffer[..len])
                    }
                    Err(_) => "no reply".to_string(),
                }
            })
            .collect()
    })
}

/// A burst of `count` queries from FLOODER_V4 over the rate limit:
/// (answered in full, truncated, no reply).
fn flood(client_ns: &str, port: u16, count: usize) -> [usize; 3] {
    let server: SocketAddr = (SERVER_V4.parse::<IpAddr>().unwrap(), port).into();
    in_client(client_ns, move || {
        let socket = UdpSocket::bind((FLOODER_V4.parse::<IpAddr>().unwrap(), 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let packet = query("pool.ntp.org", A, &Ask::edns(1232));
        for _ in 0..count {
            socket.send_to(&packet, server).expect("send");
        }
        let mut counts = [0usize; 3];
        let mut buffer = [0u8; 2048];
        while let Ok(len) = socket.recv(&mut buffer) {
            let reply = parse_reply(&buffer[..len]);
            counts[if reply.tc { 1 } else { 0 }] += 1;
        }
        counts[2] = count - counts[0] - counts[1];
        counts
    })
}

/// Frames to the server's XDP socket that its parser must refuse or the
/// answer path must survive: payloads shorter than a DNS header, UDP
/// lengths that disagree with the IP length, queries to the broadcast MAC
/// or from martian sources, and random payloads.
fn garbage_frames(server_mac: [u8; 6], client_mac: [u8; 6], port: u16) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(20);
    let server: std::net::Ipv4Addr = SERVER_V4.parse().unwrap();
    let client: std::net::Ipv4Addr = GARBAGE_V4.parse().unwrap();
    let frame = |payload: &[u8], udp_len_delta: i32| {
        let mut frame = Vec::new();
        frame.extend_from_slice(&server_mac);
        frame.extend_from_slice(&client_mac);
        frame.extend_from_slice(&[0x08, 0x00]);
        let ip_len = (20 + 8 + payload.len()) as u16;
        let mut header = vec![0x45, 0];
        header.extend_from_slice(&ip_len.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        header.extend_from_slice(&client.octets());
        header.extend_from_slice(&server.octets());
        let sum = checksum(&header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&port.to_be_bytes());
        let udp_len = (8 + payload.len() as i32 + udp_len_delta).clamp(0, 0xffff) as u16;
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame
    };
    let mut frames = Vec::new();
    for len in 0..12 {
        frames.push(frame(&vec![0xab; len], 0));
    }
    for delta in [-8, -1, 1, 2, 100, 60000] {
        for _ in 0..5 {
            frames.push(frame(&[0x11; 40], delta));
        }
    }
    // Whole queries to the broadcast MAC, and from sources no reply may
    // go to (loopback, multicast, broadcast, unspecified).
    let query = query("pool.ntp.org", A, &Ask::default());
    for _ in 0..4 {
        let mut broadcast = frame(&query, 0);
        broadcast[..6].fill(0xff);
        frames.push(broadcast);
    }
    for source in [
        [127, 0, 0, 1],
        [224, 0, 0, 1],
        [255, 255, 255, 255],
        [0, 0, 0, 0],
    ] {
        let mut martian = frame(&query, 0);
        martian[14 + 12..14 + 16].copy_from_slice(&source);
        martian[14 + 10..14 + 12].fill(0);
        let sum = checksum(&martian[14..34]);
        martian[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        frames.push(martian);
    }
    while frames.len() < 100 {
        let len = rng.random_range(12..300);
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        frames.push(frame(&payload, 0));
    }
    frames
}

/// The IPv4 header checksum.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in header.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Send raw frames out of the client's end of the pair (AF_PACKET).
fn send_frames(frames: &[Vec<u8>]) {
    let name = std::ffi::CString::new(CLIENT_LINK).unwrap();
    // SAFETY: a NUL-terminated name; 0 means not found.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "{CLIENT_LINK}");
    // SAFETY: plain socket(2), checked; closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET socket");
    for frame in frames {
        // SAFETY: zero is a valid sockaddr_ll; the fields set are plain.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = ifindex as i32;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the frame and the address are live for the call, their
        // sizes given.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(sent, frame.len() as isize, "sendto AF_PACKET");
    }
    // SAFETY: our descriptor, closed once.
    unsafe { libc::close(fd) };
}

fn mac_of(link: &str, namespace: Option<&str>) -> [u8; 6] {
    let mut command = Command::new("ip");
    if let Some(namespace) = namespace {
        command.args(["-n", namespace]);
    }
    let output = command
        .args(["-o", "link", "show", link])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&output.stdout);
    let mac = text
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for {link}: {text}"));
    let mut bytes = [0u8; 6];
    for (byte, hex) in bytes.iter_mut().zip(mac.split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("hex");
    }
    bytes
}

#[test]
fn xdp_answers_as_the_sockets_do_and_survives_garbage() {
    if !may_run() {
        return;
    }
    let client_ns = format!("tpx-client-{}", std::process::id());
    ip(&["netns", "add", &client_ns]);
    let _client = ClientNamespace(client_ns.clone());
    let dir = support::temp_dir("xdp");
    let snapshot = snapshot(&dir);
    let port = 53;
    let server_thread = {
        let client_ns = client_ns.clone();
        std::thread::spawn(move || {
            make_the_pair(&client_ns);

            // With XDP.
            let server =
                DnsServer::start(config(&snapshot, xdp(false), port)).expect("starts with --xdp");
            let queue = &server.shared().xdp_queues[0];
            ALLOCATOR.start();
            let through_xdp = ask_all(&client_ns, port);
            // Every query reached the AF_XDP socket and was answered there
            // (none went to the kernel's sockets).
            let counted = |c: &AtomicU64| c.load(Ordering::Relaxed);
            assert_eq!(
                (
                    counted(&queue.counters.received),
                    counted(&queue.counters.answered)
                ),
                (through_xdp.len() as u64, through_xdp.len() as u64),
                "received and answered through XDP"
            );
            // TCP goes on to the kernel and is answered there.
            let tcp = in_client(&client_ns, move || {
                tcp_exchange(
                    (SERVER_V4.parse::<IpAddr>().unwrap(), port).into(),
                    &query("pool.ntp.org", A, &Ask::default()),
                )
            })
            .expect("a TCP answer while XDP serves UDP");
            assert_eq!(parse_reply(&tcp).answer.len(), 4);
            let flood_xdp = flood(&client_ns, port, 200);

            // A hundred garbage frames: dropped and counted, or answered
            // by the answer path (FORMERR), never a crash.
            let frames = garbage_frames(
                mac_of(SERVER_LINK, None),
                mac_of(CLIENT_LINK, Some(&client_ns)),
                port,
            );
            let malformed_before = malformed(queue);
            let received_before = queue.counters.received.load(Ordering::Relaxed);
            in_client(&client_ns, move || send_frames(&frames));
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while queue.counters.received.load(Ordering::Relaxed) < received_before + 100
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                queue.counters.received.load(Ordering::Relaxed) - received_before,
                100,
                "every garbage frame reached the AF_XDP socket"
            );
            assert_eq!(
                malformed(queue) - malformed_before,
                12 + 30 + 8,
                "{:?}",
                queue.counters
            );
            // The metrics page shows them by outcome.
            let page = timepool::dns::server::metrics::render(server.shared());
            let sample = |outcome: &str| {
                support::metric(
                    &page,
                    &format!(
                        "timepool_dns_xdp_frames_total{{interface=\"{SERVER_LINK}\",queue=\"0\",outcome=\"{outcome}\"}}"
                    ),
                )
            };
            assert_eq!(sample("too_short"), 12.0, "{page}");
            assert_eq!(sample("bad_length"), 30.0, "{page}");
            assert_eq!(sample("bad_source"), 8.0, "{page}");
            assert!(sample("answered") >= through_xdp.len() as f64, "{page}");
            // The kernel's own count of what it could not hand the
            // socket (XDP_STATISTICS): nothing at this pace.
            for reason in ["rx_ring_full", "no_frame", "invalid_rx", "invalid_tx"] {
                let name = format!(
                    "timepool_dns_xdp_kernel_drops_total{{interface=\"{SERVER_LINK}\",queue=\"0\",reason=\"{reason}\"}}"
                );
                assert_eq!(support::metric(&page, &name), 0.0, "{page}");
            }
            let after_garbage = ask_all(&client_ns, port);
            assert_eq!(
                ALLOCATOR.stop(),
                0,
                "allocations on the XDP worker while it answered, limited and dropped"
            );
            assert_eq!(
                after_garbage, through_xdp,
                "still answering the same after the garbage"
            );

            // A second daemon on the same interface: refused, with the
            // reason, or on sockets with --xdp-fallback.
            let error = DnsServer::start(config(&snapshot, xdp(false), port + 1))
                .err()
                .expect("the interface is taken");
            let message = error.to_string();
            assert!(
                message.contains("--xdp tpxs") && message.contains("--xdp-fallback"),
                "{message}"
            );
            let fallback = DnsServer::start(config(&snapshot, xdp(true), port + 1))
                .expect("falls back to sockets");
            assert!(fallback.shared().xdp_queues.is_empty());
            let on_sockets = ask_all(&client_ns, port + 1);
            fallback.shutdown();
            server.shutdown();

            // The same daemon on sockets alone.
            let server =
                DnsServer::start(config(&snapshot, None, port)).expect("starts on sockets");
            let through_sockets = ask_all(&client_ns, port);
            let flood_sockets = flood(&client_ns, port, 200);
            server.shutdown();

            // The binary as the systemd unit with the XDP drop-in runs it:
            // not root, only the capabilities the two files grant.
            let unprivileged = with_the_drop_in_s_capabilities(&snapshot, &client_ns, port);
            (
                through_xdp,
                through_sockets,
                on_sockets,
                flood_xdp,
                flood_sockets,
                unprivileged,
            )
        })
    };
    let (through_xdp, through_sockets, on_sockets, flood_xdp, flood_sockets, unprivileged) =
        server_thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    eprintln!(
        "compared {} replies, e.g. {}; rate limit burst of 200: xdp {flood_xdp:?}, sockets {flood_sockets:?} (full, truncated, none)",
        through_xdp.len(),
        through_xdp[2]
    );
    let list = queries(port);
    for (i, (xdp, sockets)) in through_xdp.iter().zip(&through_sockets).enumerate() {
        assert_ne!(
            xdp, "no reply",
            "query {i} ({:?}) not answered through XDP",
            list[i].1
        );
        assert_eq!(
            xdp, sockets,
            "query {i} to {}: XDP and sockets differ",
            list[i].1
        );
    }
    assert_eq!(through_xdp.len(), through_sockets.len());
    assert_eq!(
        unprivileged, through_sockets,
        "the daemon with the drop-in's capabilities answers the same"
    );
    assert!(
        through_xdp.iter().any(|r| r.contains("tc: true")),
        "a truncated answer was compared"
    );
    assert!(
        through_xdp.iter().any(|r| r.contains("FORMERR")),
        "a FORMERR was compared"
    );
    // The fallback daemon answered the same on another port: only the
    // port differs in nothing it replies.
    assert_eq!(on_sockets.len(), through_xdp.len());
    assert!(on_sockets.iter().all(|r| r != "no reply"));
    // The rate limit holds on both paths alike: over it, some truncated
    // (slip 2) and some dropped, and far fewer answered in full than sent.
    for (path, [full, truncated, lost]) in [("xdp", flood_xdp), ("sockets", flood_sockets)] {
        assert!(
            full < 100 && truncated > 0 && lost > 0,
            "{path}: {full} full, {truncated} truncated, {lost} lost of 200"
        );
    }
}

fn malformed(queue: &timepool::dns::server::xdp::worker::XdpQueue) -> u64 {
    let c = &queue.counters;
    [
        &c.truncated_frames,
        &c.unexpected_frames,
        &c.bad_lengths,
        &c.too_short,
        &c.bad_sources,
    ]
    .iter()
    .map(|counter| counter.load(Ordering::Relaxed))
    .sum()
}

/// The capabilities unit files grant (their AmbientCapabilities lines),
/// in setpriv's spelling: "+net_bind_service,+bpf,...".
fn unit_capabilities(files: &[&str]) -> String {
    let mut capabilities = Vec::new();
    for file in files {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).expect("unit file");
        for line in text.lines() {
            if let Some(list) = line.strip_prefix("AmbientCapabilities=") {
                for capability in list.split_whitespace() {
                    let name = capability.trim_start_matches("CAP_").to_lowercase();
                    capabilities.push(format!("+{name}"));
                }
            }
        }
    }
    assert!(
        !capabilities.is_empty(),
        "no AmbientCapabilities in {files:?}"
    );
    capabilities.join(",")
}

/// Start `timepool dns --xdp` as user nobody with only the capabilities of
/// scripts/timepool-dns.service and scripts/timepool-dns-xdp.conf (through
/// setpriv, as systemd would grant them), ask every query, stop it by its
/// PID.
fn with_the_drop_in_s_capabilities(
    snapshot: &std::path::Path,
    client_ns: &str,
    port: u16,
) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let capabilities = unit_capabilities(&[
        "scripts/timepool-dns.service",
        "scripts/timepool-dns-xdp.conf",
    ]);
    let dir = snapshot.parent().expect("the snapshot's directory");
    // nobody must reach what it runs and reads, wherever the checkout is
    // (a home directory may be closed to others): copies in the test's
    // directory, opened to all.
    let binary = dir.join("timepool");
    let geoip = dir.join("geo-test.mmdb");
    std::fs::copy(env!("CARGO_BIN_EXE_timepool"), &binary).expect("copy the binary");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb"),
        &geoip,
    )
    .expect("copy the GeoIP database");
    for (path, mode) in [
        (dir, 0o755),
        (snapshot, 0o644),
        (&geoip, 0o644),
        (&binary, 0o755),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let log = dir.join("unprivileged.log");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{capabilities}"))
        .arg(format!("--ambient-caps=-all,{capabilities}"))
        .arg(format!("--bounding-set=-all,{capabilities}"))
        .arg("--")
        .arg(&binary)
        .args(["dns", "--threads", "1", "--xdp", SERVER_LINK, "--listen"])
        .arg(format!("{SERVER_V4}:{port},[{SERVER_V6}]:{port}"))
        .arg("--snapshot")
        .arg(snapshot)
        .arg("--geoip")
        .arg(&geoip)
        .args([
            "--rrl-rate",
            "40",
            "--edns-min-payload",
            "64",
            "--public-debug",
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("setpriv timepool dns");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("listening on UDP and TCP") {
            assert!(text.contains("serving UDP through AF_XDP"), "{text}");
            break;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timepool dns with the drop-in's capabilities did not start ({exited:?}):\n{text}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let replies = ask_all(client_ns, port);
    // SAFETY: kill(2) of our own child, not yet reaped (its PID is ours).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit on SIGTERM: {status:?}");
    replies
}
