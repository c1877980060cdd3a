//! The UDP worker loop allocates nothing per query: with the daemon
//! running in this process, a counting global allocator counts every
//! allocation made on a UDP worker thread (`timepool-udp-N`) while a client
//! sends 20 000 queries over loopback and reads the answers. Only those
//! threads count: the TCP side's tokio runtime may allocate on its own
//! threads now and then (seen once in 20 runs on a loaded machine: 12
//! bytes, its thread name, when it started a thread), which says nothing
//! about the UDP path.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::thread_alloc::ThreadAllocator;
use support::{Ask, query};
use timepool::dns::answer::AnswerConfig;
use timepool::dns::rrl::RrlSettings;
use timepool::dns::server::{DnsConfig, DnsServer, TcpSettings, UdpSettings};

#[global_allocator]
static ALLOCATOR: ThreadAllocator = ThreadAllocator::new(b"timepool-udp");

#[test]
fn the_udp_worker_loop_does_not_allocate() {
    // A wildcard address (destination addresses through IP_PKTINFO),
    // response rate limiting on, DNS cookies checked and made.
    let config = DnsConfig {
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        threads: 2,
        pin_workers: false,
        snapshot: timepool::dns::server::SnapshotSource::File(support::example_snapshot()),
        trust: Default::default(),
        metrics_listen: None,
        cookie_secret_file: None,
        rrl: Some(RrlSettings {
            slip: 2,
            table_size: 4096,
            exempt: vec!["192.0.2.0/24".parse().unwrap()],
            ..RrlSettings::at_rate(200)
        }),
        geoip: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb"),
        ),
        reload_interval: Duration::from_secs(3600),
        answer: AnswerConfig::default(),
        udp: UdpSettings::default(),
        tcp: TcpSettings::default(),
        xdp: None,
    };
    let server = DnsServer::start(config).expect("starts");
    let address: std::net::SocketAddr = ([127, 0, 0, 1], server.udp_addresses()[0].port()).into();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.connect(address).unwrap();
    let mut buffer = vec![0u8; 2048];
    // A server cookie for this client, so that the main run is never
    // rate limited (a valid cookie passes) and every query is answered.
    let client_cookie = *b"noalloc!";
    socket
        .send(&query(
            "pool.ntp.org",
            1,
            &Ask {
                cookie: Some((client_cookie, Vec::new())),
                ..Ask::edns(1232)
            },
        ))
        .unwrap();
    let length = socket.recv(&mut buffer).unwrap();
    let reply = support::parse_reply(&buffer[..length]);
    let server_cookie = reply.edns.expect("OPT").cookie.expect("a cookie").1;
    let cookie = Some((client_cookie, server_cookie));
    let packets: Vec<Vec<u8>> = vec![
        query(
            "pool.ntp.org",
            1,
            &Ask {
                subnet: Some((24, "85.214.1.0".parse().unwrap())),
                cookie: cookie.clone(),
                ..Ask::edns(1232)
            },
        ),
        query(
            "2.pool.ntp.org",
            28,
            &Ask {
                subnet: Some((48, "2a01:4f8:1::".parse().unwrap())),
                cookie: cookie.clone(),
                dnssec_ok: true,
                ..Ask::edns(1232)
            },
        ),
        query(
            "de.pool.ntp.org",
            1,
            &Ask {
                cookie: cookie.clone(),
                ..Ask::edns(1232)
            },
        ),
        query(
            "nope.pool.ntp.org",
            1,
            &Ask {
                cookie: cookie.clone(),
                ..Ask::edns(1232)
            },
        ),
        query(
            "_country.pool.ntp.org",
            16,
            &Ask {
                cookie: cookie.clone(),
                ..Ask::edns(1232)
            },
        ),
        query(
            "_status.pool.ntp.org",
            16,
            &Ask {
                cookie: cookie.clone(),
                ..Ask::edns(1232)
            },
        ),
    ];
    // Warm up: first use of per-thread state (the worker's table guards).
    for packet in &packets {
        socket.send(packet).unwrap();
        socket.recv(&mut buffer).unwrap();
    }
    ALLOCATOR.start();
    let mut answered = 0u32;
    for i in 0..20_000 {
        socket.send(&packets[i % packets.len()]).unwrap();
        if socket.recv(&mut buffer).is_ok() {
            answered += 1;
        }
    }
    // Bursts: 64 queries sent before any answer is read, so the worker's
    // recvmmsg takes several at once and sendmmsg sends several (the
    // one-at-a-time loop above gives batches of one).
    const BURST: usize = 64;
    for burst in 0..100 {
        for i in 0..BURST {
            socket.send(&packets[(burst + i) % packets.len()]).unwrap();
        }
        for _ in 0..BURST {
            if socket.recv(&mut buffer).is_ok() {
                answered += 1;
            }
        }
    }
    // A flood without cookies: answered, slipped and dropped by the rate
    // limiter (whatever comes back is read, nothing waited for).
    let plain = query("pool.ntp.org", 1, &Ask::default());
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut flood_replies = 0u32;
    for _ in 0..50 {
        for _ in 0..BURST {
            socket.send(&plain).unwrap();
        }
        while socket.recv(&mut buffer).is_ok() {
            flood_replies += 1;
        }
    }
    let allocations = ALLOCATOR.stop();
    let metrics = timepool::dns::server::metrics::render(server.shared());
    server.shutdown();
    assert_eq!(answered, 20_000 + 100 * BURST as u32);
    assert!(
        flood_replies < 50 * BURST as u32,
        "the flood was limited ({flood_replies} replies)"
    );
    for line in [
        "timepool_dns_rrl_limited_total{action=\"slipped\"} 0",
        "timepool_dns_rrl_limited_total{action=\"dropped\"} 0",
    ] {
        assert!(!metrics.contains(line), "{line}");
    }
    assert_eq!(
        allocations, 0,
        "allocations while serving 29 600 UDP queries"
    );
}
