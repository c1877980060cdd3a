//! The daemon at the internet edge: replies from the address each query
//! was sent to on a wildcard listener (in a network namespace of the
//! test's own, with addresses the host does not have), response rate
//! limiting, DNS cookies through the daemon, and TCP that one client
//! cannot monopolise.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Ask, Reply, parse_reply, query, tcp_exchange, tcp_receive};
use timepool::dns::answer::AnswerConfig;
use timepool::dns::rrl::RrlSettings;
use timepool::dns::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};

fn config(listen: &[&str]) -> DnsConfig {
    DnsConfig {
        listen: listen.iter().map(|a| a.parse().unwrap()).collect(),
        threads: 2,
        pin_workers: false,
        snapshot: SnapshotSource::File(support::example_snapshot()),
        trust: Default::default(),
        metrics_listen: None,
        cookie_secret_file: None,
        rrl: None,
        xdp: None,
        geoip: None,
        reload_interval: Duration::from_secs(3600),
        answer: AnswerConfig::default(),
        udp: UdpSettings::default(),
        tcp: TcpSettings::default(),
    }
}

fn rrl(rate: u32, slip: u32, exempt: &[&str]) -> RrlSettings {
    RrlSettings {
        slip,
        exempt: exempt.iter().map(|p| p.parse().unwrap()).collect(),
        ..RrlSettings::at_rate(rate)
    }
}

/// A UDP socket bound to `local`, for queries from that address.
fn client(local: &str) -> UdpSocket {
    let socket = UdpSocket::bind((local.parse::<IpAddr>().unwrap(), 0)).expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
}

/// One query from `socket`; the reply and the address it came from.
fn exchange(socket: &UdpSocket, server: SocketAddr, packet: &[u8]) -> Option<(Reply, SocketAddr)> {
    socket.send_to(packet, server).expect("send");
    let mut buffer = [0u8; 4096];
    let (length, from) = socket.recv_from(&mut buffer).ok()?;
    Some((parse_reply(&buffer[..length]), from))
}

/// Run `body` on a thread in a new network namespace with loopback up and
/// `addresses` on it, so that the test can use addresses the host does
/// not have. Everything `body` starts (the daemon's threads) is in the
/// namespace, which goes away when they end. Returns false when
/// namespaces are unavailable (not root): the caller skips, unless
/// TIMEPOOL_NETNS_REQUIRED=1 (scripts/test.sh, CI) makes that a failure.
fn in_network_namespace(addresses: &[&str], body: impl FnOnce() + Send + 'static) -> bool {
    let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which is ours and runs
        // nothing else; a failure is reported by the return value.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "ip {args:?}: {status:?}"
            );
        };
        ip(&["link", "set", "lo", "up"]);
        for address in &addresses {
            if address.contains(':') {
                ip(&["-6", "addr", "add", address, "dev", "lo", "nodad"]);
            } else {
                ip(&["addr", "add", address, "dev", "lo"]);
            }
        }
        body();
        Ok(())
    });
    match thread.join() {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            let required = std::env::var("TIMEPOOL_NETNS_REQUIRED").is_ok_and(|v| v == "1");
            assert!(!required, "cannot make a network namespace: {error}");
            eprintln!("skipped: cannot make a network namespace ({error}); run as root");
            false
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[test]
fn a_wildcard_listener_answers_from_the_address_each_query_was_sent_to() {
    // In its own namespace: the daemon on 0.0.0.0 and [::], the loopback
    // interface with three more addresses (from the benchmarking ranges
    // 198.18.0.0/15 and 2001:2::/48). Without IP_PKTINFO the kernel would
    // answer a query to 198.18.0.53 from 127.0.0.1, and one to 2001:2::53
    // from ::1: the client drops such replies.
    in_network_namespace(
        &["198.18.0.53/32", "198.18.0.54/32", "2001:2::53/128"],
        || {
            let server = DnsServer::start(config(&["0.0.0.0:0", "[::]:0"])).expect("starts");
            let (v4, v6) = (
                server.udp_addresses()[0].port(),
                server.udp_addresses()[1].port(),
            );
            let packet = query("pool.ntp.org", 1, &Ask::edns(1232));
            for (local, target, port) in [
                ("127.0.0.1", "127.0.0.1", v4),
                ("127.0.0.1", "198.18.0.53", v4),
                ("127.0.0.1", "198.18.0.54", v4),
                ("198.18.0.53", "198.18.0.54", v4),
                ("::1", "::1", v6),
                ("::1", "2001:2::53", v6),
            ] {
                let target: SocketAddr = (target.parse::<IpAddr>().unwrap(), port).into();
                let socket = client(local);
                let (reply, from) = exchange(&socket, target, &packet).expect("an answer");
                assert_eq!(from, target, "the reply comes from the address asked");
                assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
                // TCP replies on the accepted connection, from that address.
                let answer = tcp_exchange(target, &packet).expect("a TCP answer");
                assert_eq!(parse_reply(&answer).answer.len(), 4, "TCP to {target}");
            }
            server.shutdown();
        },
    );
}

#[test]
fn freebind_binds_an_address_not_yet_on_the_host() {
    in_network_namespace(&[], || {
        // Without IP_FREEBIND the bind fails: the address is nowhere.
        let mut plain = config(&["198.18.0.99:0"]);
        plain.threads = 1;
        let error = DnsServer::start(plain).err().expect("the bind fails");
        assert!(error.to_string().contains("cannot bind"), "{error}");
        let mut freebind = config(&["198.18.0.99:0", "[2001:2::99]:0"]);
        freebind.udp.freebind = true;
        let server = DnsServer::start(freebind).expect("starts with --freebind");
        let port = server.udp_addresses()[0].port();
        // The anycast address comes up later: then it is served.
        let status = Command::new("ip")
            .args(["addr", "add", "198.18.0.99/32", "dev", "lo"])
            .status()
            .expect("ip");
        assert!(status.success());
        let target: SocketAddr = ("198.18.0.99".parse::<IpAddr>().unwrap(), port).into();
        let (reply, from) = exchange(
            &client("127.0.0.1"),
            target,
            &query("pool.ntp.org", 1, &Ask::default()),
        )
        .expect("answered once the address is there");
        assert_eq!((from, reply.answer.len()), (target, 4));
        server.shutdown();
    });
}

/// Send `count` queries from `socket`, 16 at a time (a longer burst would
/// overflow loopback's socket buffers: they count each datagram's kernel
/// overhead, about a kilobyte), reading the replies of each group until
/// none comes for 150 ms: (answered in full, truncated, BADCOOKIE, no
/// reply).
fn flood(socket: &UdpSocket, server: SocketAddr, ask: &Ask, count: usize) -> [usize; 4] {
    socket
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut tally = [0; 4];
    let mut buffer = [0u8; 4096];
    let mut sent = 0;
    while sent < count {
        let group = (count - sent).min(16);
        for id in sent..sent + group {
            let ask = Ask {
                id: id as u16,
                ..ask.clone()
            };
            socket
                .send_to(&query("pool.ntp.org", 1, &ask), server)
                .expect("send");
        }
        sent += group;
        let mut replies = 0;
        while replies < group {
            let Ok(length) = socket.recv(&mut buffer) else {
                break;
            };
            replies += 1;
            let reply = parse_reply(&buffer[..length]);
            let kind = match (reply.rcode.as_str(), reply.tc, reply.answer.len()) {
                ("NOERROR", false, 4) => 0,
                ("NOERROR", true, 0) => 1,
                ("BADCOOKIE", false, 0) => 2,
                other => panic!("unexpected reply {other:?}: {reply:#?}"),
            };
            tally[kind] += 1;
        }
    }
    tally[3] = count - tally[0] - tally[1] - tally[2];
    tally
}

#[test]
fn rate_limiting_slips_and_drops_a_flood_and_spares_others() {
    let mut settings = config(&["127.0.0.1:0"]);
    // One worker: the whole rate is its own (with W workers each allows
    // rate / W, and one client socket meets one worker).
    settings.threads = 1;
    settings.rrl = Some(rrl(10, 2, &["127.0.2.0/24"]));
    let server = DnsServer::start(settings).expect("starts");
    let address = server.udp_addresses()[0];
    // 127.0.0.0/24 floods: a second's worth is answered (and 10 more a
    // second while the flood lasts), then half of the rest slips (TC) and
    // half is dropped.
    let [answered, truncated, badcookie, lost] =
        flood(&client("127.0.0.1"), address, &Ask::default(), 300);
    assert!((10..150).contains(&answered), "answered {answered}");
    assert!(
        truncated > 50 && lost > 50,
        "truncated {truncated}, lost {lost}"
    );
    assert_eq!(badcookie, 0);
    // Another /24 at the same time is answered in full.
    let other = flood(&client("127.0.1.1"), address, &Ask::default(), 10);
    assert_eq!(other, [10, 0, 0, 0], "another prefix is not limited");
    // An exempt prefix is never limited.
    let exempt = flood(&client("127.0.2.7"), address, &Ask::default(), 300);
    assert_eq!(exempt, [300, 0, 0, 0]);
    // The limited prefix with a valid cookie: answered in full. The cookie
    // comes over TCP, which is never limited.
    let client_cookie = *b"edgetest";
    let first = Ask {
        cookie: Some((client_cookie, Vec::new())),
        ..Ask::edns(1232)
    };
    let tcp = server.tcp_addresses()[0];
    let reply = parse_reply(&tcp_exchange(tcp, &query("pool.ntp.org", 1, &first)).expect("TCP"));
    assert_eq!(reply.answer.len(), 4, "TCP is not limited");
    let server_cookie = reply.edns.expect("OPT").cookie.expect("cookie").1;
    let with_cookie = Ask {
        cookie: Some((client_cookie, server_cookie)),
        ..Ask::edns(1232)
    };
    let flooding = client("127.0.0.1");
    assert_eq!(flood(&flooding, address, &with_cookie, 300), [300, 0, 0, 0]);
    // Without it, still limited; a client cookie alone slips as BADCOOKIE.
    let [answered, truncated, badcookie, _] = flood(&flooding, address, &first, 100);
    assert!(
        answered < 100 && badcookie > 0 && truncated == 0,
        "{answered} {badcookie}"
    );
    let metrics = timepool::dns::server::metrics::render(server.shared());
    for line in [
        "timepool_dns_rrl_limited_total{action=\"slipped\"}",
        "timepool_dns_rrl_limited_total{action=\"dropped\"}",
        "timepool_dns_cookie_queries_total{cookie=\"valid\"} 300",
    ] {
        let value = metrics
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line} in {metrics}"));
        assert!(!value.ends_with(" 0"), "{value}");
    }
    server.shutdown();
}

/// A TCP connection from `local` to `server` that holds a half-sent
/// length prefix, and whether the server admitted it (it is still open
/// after a moment, where a refused one reads EOF).
fn stalled_connection(local: &str, server: SocketAddr) -> (TcpStream, bool) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = (local.parse::<IpAddr>().unwrap(), 0).into();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(&[0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let admitted = match std::io::Read::read(&mut stream, &mut byte) {
        Ok(0) => false,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => false,
        // Timed out: the server holds it open, waiting for the query.
        _ => true,
    };
    (stream, admitted)
}

#[test]
fn one_client_cannot_hold_every_tcp_slot() {
    let mut settings = config(&["127.0.0.1:0"]);
    settings.tcp.max_connections = 20;
    settings.tcp.max_per_client = 4;
    settings.tcp.idle_timeout = Duration::from_secs(30);
    let server = DnsServer::start(settings).expect("starts");
    let address = server.tcp_addresses()[0];
    // 20 slow connections from one address: 4 are held, 16 closed.
    let held: Vec<(TcpStream, bool)> = (0..20)
        .map(|_| stalled_connection("127.0.0.1", address))
        .collect();
    let admitted = held.iter().filter(|(_, admitted)| *admitted).count();
    assert_eq!(admitted, 4, "per-client cap");
    // Another client is served at once.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    socket.connect(&address.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    support::tcp_send(&mut stream, &query("pool.ntp.org", 1, &Ask::default()));
    let reply = parse_reply(&tcp_receive(&mut stream).expect("served"));
    assert_eq!(reply.answer.len(), 4);
    let refused = server
        .shared()
        .counters
        .tcp_refused_per_client
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 16);
    drop(held);
    server.shutdown();
}

#[test]
fn a_tcp_connection_ends_after_its_queries_or_its_lifetime() {
    let mut settings = config(&["127.0.0.1:0"]);
    settings.tcp.max_queries = 3;
    settings.tcp.max_lifetime = Duration::from_millis(800);
    let server = DnsServer::start(settings).expect("starts");
    let address = server.tcp_addresses()[0];
    let packet = query("pool.ntp.org", 1, &Ask::default());
    // Four queries written at once: three answers, then the server closes.
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for _ in 0..4 {
        support::tcp_send(&mut stream, &packet);
    }
    for _ in 0..3 {
        assert!(tcp_receive(&mut stream).is_some());
    }
    assert!(tcp_receive(&mut stream).is_none(), "closed after 3 queries");
    // A client that asks every half second is closed at the end of the
    // connection's life (0.8 s), before its third query (the query limit
    // alone would allow three).
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(3) {
        support::tcp_send(&mut stream, &packet);
        if tcp_receive(&mut stream).is_none() {
            break;
        }
        answered += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        answered < 3,
        "the lifetime ends the connection ({answered} answered)"
    );
    server.shutdown();
}

#[test]
fn the_cookie_secret_file_is_shared_and_rotated() {
    let dir = std::env::temp_dir().join(format!("timepool-test-cookies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cookie-secret");
    let write = |text: &str| {
        let temp = dir.join("cookie-secret.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &file).unwrap();
    };
    let old = "00112233445566778899aabbccddeeff";
    let new = "ffeeddccbbaa99887766554433221100";
    write(&format!("{old}\n"));
    let node = |file: &Path| {
        let mut settings = config(&["127.0.0.1:0"]);
        settings.cookie_secret_file = Some(file.to_path_buf());
        settings.reload_interval = Duration::from_millis(50);
        DnsServer::start(settings).expect("starts")
    };
    // Two nodes of one site: a cookie from one is valid at the other.
    let (a, b) = (node(&file), node(&file));
    let client_cookie = *b"rotation";
    let ask = |server: &DnsServer, server_cookie: Vec<u8>| {
        let ask = Ask {
            cookie: Some((client_cookie, server_cookie)),
            ..Ask::edns(1232)
        };
        let packet = query("pool.ntp.org", 1, &ask);
        let (reply, _) =
            exchange(&client("127.0.0.1"), server.udp_addresses()[0], &packet).expect("answer");
        reply.edns.expect("OPT").cookie.expect("cookie").1
    };
    let valid = |server: &DnsServer| {
        let metrics = timepool::dns::server::metrics::render(server.shared());
        metrics
            .lines()
            .find(|l| l.starts_with("timepool_dns_cookie_queries_total{cookie=\"valid\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let from_a = ask(&a, Vec::new());
    ask(&b, from_a.clone());
    assert_eq!(valid(&b), 1, "node b accepts node a's cookie");
    // Rotation: the new secret first, the old one second. Node a's old
    // cookie is still valid at b, and b's new cookies are of the new secret.
    write(&format!("{new}\n{old}\n"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.shared().cookies.load().previous.is_none() {
        assert!(
            Instant::now() < deadline,
            "the rotated file was never loaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let from_b = ask(&b, from_a.clone());
    assert_eq!(
        valid(&b),
        2,
        "the previous secret is accepted during rotation"
    );
    // Once the old secret is gone, a's old cookie is not valid any more
    // but b's new one is.
    write(&format!("{new}\n"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.shared().cookies.load().previous.is_some() {
        assert!(Instant::now() < deadline, "the file was never reloaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    ask(&b, from_a);
    assert_eq!(valid(&b), 2);
    ask(&b, from_b.clone());
    assert_eq!(valid(&b), 3);
    // A broken file is rejected and the secrets in use are kept.
    write("not a secret\n");
    let failures =
        || (b.shared().counters.reload_failures).load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while failures() == 0 {
        assert!(Instant::now() < deadline, "the broken file was never read");
        std::thread::sleep(Duration::from_millis(20));
    }
    ask(&b, from_b.clone());
    assert_eq!(valid(&b), 4, "the secrets in use are kept");
    a.shutdown();
    b.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
