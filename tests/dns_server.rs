//! The daemon started on 127.0.0.1:0 and [::1]:0, queried over UDP and
//! TCP with queries built and responses parsed by `domain`.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::temp_dir;

use support::{
    Ask, parse_reply, query, soa_serial, tcp_exchange, tcp_receive, tcp_send, udp_exchange,
};
use timepool::dns::answer::AnswerConfig;
use timepool::dns::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};

fn config(snapshot: &Path, listen: &[&str]) -> DnsConfig {
    DnsConfig {
        listen: listen.iter().map(|a| a.parse().unwrap()).collect(),
        threads: 2,
        pin_workers: false,
        snapshot: SnapshotSource::File(snapshot.to_path_buf()),
        trust: Default::default(),
        metrics_listen: None,
        cookie_secret_file: None,
        rrl: None,
        xdp: None,
        geoip: None,
        reload_interval: Duration::from_millis(100),
        answer: AnswerConfig::default(),
        udp: UdpSettings {
            batch: 32,
            recv_buffer: None,
            send_buffer: None,
            ..UdpSettings::default()
        },
        tcp: TcpSettings {
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            ..TcpSettings::default()
        },
    }
}

/// Write a snapshot with the given serial atomically (temp file + rename),
/// as the zone builder publishes.
fn publish(path: &Path, serial: u64) {
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::example_snapshot()).unwrap()).unwrap();
    document["serial"] = serial.into();
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, serde_json::to_vec(&document).unwrap()).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn answers_over_udp_and_tcp_on_ipv4_and_ipv6() {
    let server = DnsServer::start(config(
        &support::example_snapshot(),
        &["127.0.0.1:0", "[::1]:0"],
    ))
    .expect("starts");
    assert_eq!(server.udp_addresses().len(), 2);
    for (&udp, &tcp) in server.udp_addresses().iter().zip(server.tcp_addresses()) {
        assert_eq!(udp.port(), tcp.port(), "UDP and TCP share the port");
        let packet = query("pool.ntp.org", 1, &Ask::edns(1232));
        let reply = parse_reply(&udp_exchange(udp, &packet).expect("UDP answer"));
        assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
        let reply = parse_reply(&tcp_exchange(tcp, &packet).expect("TCP answer"));
        assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
    }
    server.shutdown();
}

#[test]
fn tcp_answers_several_queries_in_order_and_closes_idle_connections() {
    let mut settings = config(&support::example_snapshot(), &["127.0.0.1:0"]);
    settings.tcp.idle_timeout = Duration::from_millis(500);
    let server = DnsServer::start(settings).expect("starts");
    let address = server.tcp_addresses()[0];
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // Three queries written back to back, before reading anything.
    let names = ["de.pool.ntp.org", "nope.pool.ntp.org", "pool.ntp.org"];
    for (id, name) in names.iter().enumerate() {
        let ask = Ask {
            id: id as u16 + 100,
            ..Ask::default()
        };
        tcp_send(&mut stream, &query(name, 1, &ask));
    }
    for (id, name) in names.iter().enumerate() {
        let reply = parse_reply(&tcp_receive(&mut stream).expect("answer"));
        assert_eq!(reply.id, id as u16 + 100, "answered in order");
        assert_eq!(reply.question.unwrap().0, *name);
    }
    // Idle past the timeout: the server closes the connection.
    let started = Instant::now();
    assert!(tcp_receive(&mut stream).is_none(), "closed by the server");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.shutdown();
}

#[test]
fn tcp_connection_limit_and_half_open_clients_do_not_stall_others() {
    let mut settings = config(&support::example_snapshot(), &["127.0.0.1:0"]);
    settings.tcp.max_connections = 4;
    settings.tcp.idle_timeout = Duration::from_secs(30);
    let server = DnsServer::start(settings).expect("starts");
    let address = server.tcp_addresses()[0];
    // Three clients that send half a length prefix and then nothing.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&[0]).unwrap();
        stalled.push(stream);
    }
    // A fourth client is still served at once.
    let reply = tcp_exchange(address, &query("pool.ntp.org", 1, &Ask::default())).expect("served");
    assert_eq!(parse_reply(&reply).answer.len(), 4);
    // A fourth connection that stays open. The server frees the slot of the
    // client above only once it has read that client's EOF, so until then a
    // new connection may be turned away: retry until one is admitted (it
    // answers a query) and keep it.
    let held = admitted_connection(address);
    // With four held open, a fifth connection is closed at accept.
    assert!(
        tcp_exchange(address, &query("pool.ntp.org", 1, &Ask::default())).is_none(),
        "over the limit"
    );
    drop(held);
    drop(stalled);
    // Slots freed: a new client is admitted again (within a few seconds).
    drop(admitted_connection(address));
    server.shutdown();
}

/// A TCP connection the server has admitted (it answered a query on it),
/// retried for a few seconds while the server may still be at its limit.
fn admitted_connection(address: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut stream) = TcpStream::connect(address) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let packet = query("pool.ntp.org", 1, &Ask::default());
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&packet);
            if stream.write_all(&framed).is_ok() && tcp_receive(&mut stream).is_some() {
                return stream;
            }
        }
        assert!(Instant::now() < deadline, "no TCP slot freed in 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_under_load_loses_no_query_and_rejects_a_bad_snapshot() {
    let dir = temp_dir("reload");
    let path = dir.join("snapshot.json");
    publish(&path, 100);
    let server = DnsServer::start(config(&path, &["127.0.0.1:0"])).expect("starts");
    let address = server.udp_addresses()[0];
    assert_eq!(soa_serial(address), 100);

    // A client that sends queries one after another the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, answered, lost) = (stop.clone(), answered.clone(), lost.clone());
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let mut buffer = [0u8; 2048];
            let mut id = 0u16;
            while !stop.load(Ordering::Relaxed) {
                id = id.wrapping_add(1);
                let ask = Ask {
                    id,
                    ..Ask::default()
                };
                socket
                    .send_to(&query("de.pool.ntp.org", 1, &ask), address)
                    .unwrap();
                match socket.recv(&mut buffer) {
                    Ok(n) if parse_reply(&buffer[..n]).answer.len() == 4 => {
                        answered.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => lost.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    for serial in 101..=105 {
        std::thread::sleep(Duration::from_millis(150));
        publish(&path, serial);
        let deadline = Instant::now() + Duration::from_secs(5);
        while soa_serial(address) != serial as u32 {
            assert!(Instant::now() < deadline, "serial {serial} never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The client is answered from this snapshot too (it keeps asking
        // across every reload).
        let before = answered.load(Ordering::Relaxed);
        while answered.load(Ordering::Relaxed) == before {
            assert!(Instant::now() < deadline, "no answer after serial {serial}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // A broken snapshot is rejected; the last good one keeps serving.
    std::fs::write(dir.join("bad.tmp"), b"{\"version\": 1, \"serial\": 999").unwrap();
    std::fs::rename(dir.join("bad.tmp"), &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .shared()
        .counters
        .reload_failures
        .load(Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the broken snapshot was never tried"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(soa_serial(address), 105);
    // SIGHUP's path: an explicit reload of a good file.
    publish(&path, 106);
    assert_eq!(server.shared().reload().expect("reloads"), 106);

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let (answered, lost) = (
        answered.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    );
    assert_eq!(
        lost, 0,
        "no query lost across 6 reloads ({answered} answered)"
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Malformed packets get FORMERR or nothing, never a crash, and the daemon
/// keeps serving.
#[test]
fn malformed_packets_get_formerr_or_nothing() {
    let server =
        DnsServer::start(config(&support::example_snapshot(), &["127.0.0.1:0"])).expect("starts");
    let address = server.udp_addresses()[0];
    let good = query("pool.ntp.org", 1, &Ask::default());
    let with_header = |question: &[u8], qdcount: u8| {
        let mut packet = vec![0xAB, 0xCD, 0x01, 0x00, 0, qdcount, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(question);
        packet
    };
    let mut long_label = vec![64];
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(60);
        long_name.extend_from_slice(&[b'a'; 60]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut garbage_opt = good.clone();
    garbage_opt[11] = 1;
    garbage_opt.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 9, 0, 8, 0]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage");
    let cases: Vec<(&str, Vec<u8>, Option<u8>)> = vec![
        ("empty", vec![], None),
        ("truncated header", good[..7].to_vec(), None),
        ("header only", with_header(&[], 1), Some(1)),
        (
            "pointer loop",
            with_header(&[0xC0, 12, 0, 1, 0, 1], 1),
            Some(1),
        ),
        (
            "pointer forward",
            with_header(&[0xC0, 40, 0, 1, 0, 1], 1),
            Some(1),
        ),
        ("label over 63", with_header(&long_label, 1), Some(1)),
        ("name over 255", with_header(&long_name, 1), Some(1)),
        ("qdcount 0", with_header(&good[12..], 0), Some(1)),
        ("qdcount 2", with_header(&good[12..], 2), Some(1)),
        ("garbage OPT", garbage_opt, Some(1)),
        ("trailing garbage", trailing, Some(1)),
        (
            "a response",
            {
                let mut p = good.clone();
                p[2] |= 0x80;
                p
            },
            None,
        ),
    ];
    for (what, packet, expected_rcode) in cases {
        let reply = udp_exchange(address, &packet);
        match expected_rcode {
            None => assert!(reply.is_none(), "{what}: no answer expected"),
            Some(code) => {
                let reply = reply.unwrap_or_else(|| panic!("{what}: expected FORMERR"));
                assert_eq!(reply[3] & 0x0F, code, "{what}: rcode");
                assert_eq!(&reply[..2], &packet[..2], "{what}: id echoed");
            }
        }
        // Still serving.
        let reply = parse_reply(&udp_exchange(address, &good).expect("still answering"));
        assert_eq!(reply.answer.len(), 4, "after {what}");
    }
    server.shutdown();
}

/// The real binary: starts, answers, reloads on SIGHUP, stops on SIGTERM.
#[test]
fn the_binary_serves_and_reloads_on_sighup() {
    let dir = temp_dir("binary");
    let path = dir.join("snapshot.json");
    publish(&path, 7);
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_timepool"));
    node.args(["dns", "--snapshot"]).arg(&path).args([
        "--reload-interval",
        "3600",
        "--threads",
        "1",
    ]);
    let (mut child, address, _) = support::start_dns_node(node, &dir.join("node.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_exchange(address, &query("pool.ntp.org", 6, &Ask::default())).is_none() {
        assert!(Instant::now() < deadline, "daemon did not come up");
    }
    assert_eq!(soa_serial(address), 7);
    publish(&path, 8);
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child's PID with a valid signal number.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while soa_serial(address) != 8 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// 1 000 TCP connections open at once are all answered; once idle past
/// the timeout, the server closes every one of them.
#[test]
fn a_thousand_concurrent_tcp_connections() {
    let mut settings = config(&support::example_snapshot(), &["127.0.0.1:0"]);
    settings.tcp.max_connections = 2000;
    // All from 127.0.0.1: the per-client cap would stop them at 16.
    settings.tcp.max_per_client = 2000;
    settings.tcp.idle_timeout = Duration::from_secs(2);
    let server = DnsServer::start(settings).expect("starts");
    let address = server.tcp_addresses()[0];
    let mut streams: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let stream =
                TcpStream::connect(address).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
        })
        .collect();
    // Every connection is open before any query is sent.
    for (i, stream) in streams.iter_mut().enumerate() {
        let ask = Ask {
            id: i as u16,
            ..Ask::default()
        };
        tcp_send(stream, &query("pool.ntp.org", 1, &ask));
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let reply =
            parse_reply(&tcp_receive(stream).unwrap_or_else(|| panic!("connection {i} answered")));
        assert_eq!(reply.id, i as u16);
        assert_eq!(reply.answer.len(), 4);
    }
    // Idle: each is closed by the server (a read returns EOF, not the
    // read timeout), and not before its idle timeout of 2 s.
    let replied = Instant::now();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(stream, &mut byte);
        assert!(
            matches!(read, Ok(0)),
            "connection {i} closed by the server: {read:?}"
        );
        if i == 0 {
            // The first was answered first, so it was idle longest.
            let idle = replied.elapsed();
            assert!(
                idle >= Duration::from_millis(1000),
                "closed after {idle:?}, before its idle timeout"
            );
        }
    }
    server.shutdown();
}

/// The GeoIP database is reloaded when its file changes; a corrupt file is
/// rejected and the previous table keeps serving. Queries run all along:
/// every one is answered, NOERROR, across both swaps.
#[test]
fn geoip_database_reloads_and_rejects_a_corrupt_file() {
    use timepool::shared::geo::Continent;
    use timepool::shared::geo::mmdb_writer::{CountryRecord, MmdbWriter};
    let dir = temp_dir("geoip");
    let database = dir.join("geo.mmdb");
    std::fs::write(
        &database,
        timepool::shared::geo::testdata::write_test_database(),
    )
    .unwrap();
    let mut settings = config(&support::example_snapshot(), &["127.0.0.1:0"]);
    settings.geoip = Some(database.clone());
    let server = DnsServer::start(settings).expect("starts");
    let address = server.udp_addresses()[0];
    let located = || {
        let ask = Ask {
            subnet: Some((24, "85.214.1.0".parse().unwrap())),
            ..Ask::edns(1232)
        };
        let reply = parse_reply(
            &udp_exchange(address, &query("_country.pool.ntp.org", 16, &ask)).expect("answer"),
        );
        reply.answer[0].data.clone()
    };
    assert!(located().contains("country de"), "{}", located());
    // Load beside the swaps: one query after another, each must come back
    // NOERROR with addresses.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut answered, mut bad) = (0u64, Vec::new());
            let ask = Ask {
                subnet: Some((24, "85.214.1.0".parse().unwrap())),
                ..Ask::edns(1232)
            };
            let packet = query("pool.ntp.org", 1, &ask);
            while !stop.load(Ordering::Relaxed) {
                match udp_exchange(address, &packet) {
                    Some(reply) => {
                        let reply = parse_reply(&reply);
                        if reply.rcode == "NOERROR" && !reply.answer.is_empty() {
                            answered += 1;
                        } else {
                            bad.push(format!(
                                "{} with {} answers",
                                reply.rcode,
                                reply.answer.len()
                            ));
                        }
                    }
                    None => bad.push("no answer".to_string()),
                }
            }
            (answered, bad)
        })
    };
    let failures = || {
        server
            .shared()
            .counters
            .reload_failures
            .load(Ordering::Relaxed)
    };
    // A corrupt file: rejected, Germany still Germany.
    std::fs::write(dir.join("bad.tmp"), b"not a MaxMind database").unwrap();
    std::fs::rename(dir.join("bad.tmp"), &database).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures() < 1 {
        assert!(
            Instant::now() < deadline,
            "the corrupt file was never tried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(located().contains("country de"));
    // A new database that puts the network in France: swapped in.
    let mut writer = MmdbWriter::new("GeoLite2-Country", "reload test", 1_704_067_200);
    writer
        .insert(
            "85.214.0.0".parse().unwrap(),
            16,
            CountryRecord {
                country: Some(*b"fr"),
                registered_country: None,
                continent: Some(Continent::Europe),
            },
        )
        .unwrap();
    std::fs::write(dir.join("new.tmp"), writer.to_bytes().unwrap()).unwrap();
    std::fs::rename(dir.join("new.tmp"), &database).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !located().contains("country fr") {
        assert!(
            Instant::now() < deadline,
            "new GeoIP database never loaded: {}",
            located()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, bad) = load.join().expect("load thread");
    assert!(answered >= 1, "the load ran");
    assert_eq!(
        bad,
        Vec::<String>::new(),
        "every query answered NOERROR ({answered} were)"
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// What the fake control plane of the next test serves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Serve {
    /// The example snapshot with this serial.
    Good(u64),
    /// A 200 whose body is cut-off JSON.
    Invalid,
    /// A 200 whose body never ends.
    Endless,
    /// Nothing: the request is read and no answer ever comes.
    Hang,
}

/// A control plane that misbehaves on demand: plain HTTP on loopback, a
/// thread per connection. It counts the requests and how many bytes of
/// an endless body the node read before it hung up.
struct FakeControlPlane {
    address: SocketAddr,
    serve: Arc<std::sync::Mutex<Serve>>,
    requests: Arc<AtomicU64>,
    endless_written: Arc<AtomicU64>,
}

impl FakeControlPlane {
    fn start(first: Serve) -> FakeControlPlane {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let serve = Arc::new(std::sync::Mutex::new(first));
        let requests = Arc::new(AtomicU64::new(0));
        let endless_written = Arc::new(AtomicU64::new(0));
        let (serving, counting, writing) =
            (serve.clone(), requests.clone(), endless_written.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (serving, counting, writing) =
                    (serving.clone(), counting.clone(), writing.clone());
                std::thread::spawn(move || Self::answer(stream, &serving, &counting, &writing));
            }
        });
        FakeControlPlane {
            address,
            serve,
            requests,
            endless_written,
        }
    }

    fn answer(
        mut stream: TcpStream,
        serve: &std::sync::Mutex<Serve>,
        requests: &AtomicU64,
        endless_written: &AtomicU64,
    ) {
        // The request's head (the node sends no body).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match std::io::Read::read(&mut stream, &mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let mode = *serve.lock().unwrap();
        match mode {
            Serve::Good(serial) => {
                let mut document: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(support::example_snapshot()).unwrap())
                        .unwrap();
                document["serial"] = serial.into();
                let body = serde_json::to_vec(&document).unwrap();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
            Serve::Invalid => {
                let body = br#"{"version": 1, "serial": 99, "origins": ["#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
            Serve::Endless => {
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                let chunk = vec![b' '; 1 << 20];
                let mut written = 0u64;
                while stream.write_all(&chunk).is_ok() {
                    written += chunk.len() as u64;
                    // More than the node may read, by far: it did not stop.
                    if written > 512 << 20 {
                        break;
                    }
                }
                endless_written.fetch_max(written, Ordering::Relaxed);
            }
            Serve::Hang => {
                // Hold the connection, say nothing, until the node gives up
                // (its timeout closes it) or the mode changes.
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                while *serve.lock().unwrap() == Serve::Hang {
                    match std::io::Read::read(&mut stream, &mut byte) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().unwrap() = serve;
    }
}

/// A node following a control plane that serves an invalid snapshot, a
/// body without end, then nothing at all while SIGHUP asks for a pull at
/// the same time: the node keeps answering from the last good snapshot
/// throughout, counts each failure, stops reading the endless body at its
/// limit, gives up on the silent one at its timeout, takes the next good
/// snapshot, and stops cleanly on SIGTERM.
#[test]
fn a_node_survives_a_control_plane_that_misbehaves() {
    let dir = temp_dir("misbehaving");
    let plane = FakeControlPlane::start(Serve::Good(10));
    // A failed wait says what the node logged.
    let node_log = || std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_timepool"));
    node.args(["dns", "--snapshot-url"])
        .arg(format!("http://{}/api/v1/snapshot", plane.address))
        .arg("--snapshot-cache")
        .arg(dir.join("cache.json"))
        .args(["--snapshot-poll", "0.2", "--snapshot-timeout", "2"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--threads", "1"]);
    let (mut child, address, metrics) = support::start_dns_node(node, &dir.join("node.log"));
    let metrics = metrics.expect("metrics address logged");
    let pid = child.id() as i32;
    let failed_pulls = || {
        support::metrics_page(metrics)
            .and_then(|page| {
                support::metric_value(&page, "timepool_dns_reloads_total{result=\"failed\"}")
            })
            .unwrap_or(-1.0)
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}; the node's log:\n{}",
                node_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("the node came up", &|| {
        udp_exchange(address, &query("pool.ntp.org", 6, &Ask::default())).is_some()
    });
    assert_eq!(soa_serial(address), 10);
    let answers = || {
        let reply = parse_reply(
            &udp_exchange(address, &query("pool.ntp.org", 1, &Ask::default())).expect("answered"),
        );
        reply.rcode == "NOERROR" && !reply.answer.is_empty()
    };

    // Cut-off JSON: refused, counted, the old snapshot serves.
    let before = failed_pulls();
    plane.set(Serve::Invalid);
    wait("the invalid snapshot was refused", &|| {
        failed_pulls() > before
    });
    assert_eq!(soa_serial(address), 10);
    assert!(answers());

    // A body without end: the node stops reading past its 64 MiB limit.
    let before = failed_pulls();
    plane.set(Serve::Endless);
    wait("the endless body was refused", &|| {
        failed_pulls() > before && plane.endless_written.load(Ordering::Relaxed) > 0
    });
    let written = plane.endless_written.load(Ordering::Relaxed);
    eprintln!("the node read {} MiB of the endless body", written >> 20);
    assert!(
        written <= 96 << 20,
        "the node read {written} bytes of a body without end"
    );
    assert_eq!(soa_serial(address), 10);
    assert!(answers());

    // Silence: a pull hangs; SIGHUP asks for another at once. Both wait
    // on the silent control plane; the node answers all the while.
    plane.set(Serve::Hang);
    let asked = plane.requests.load(Ordering::Relaxed);
    wait("a pull is hanging", &|| {
        plane.requests.load(Ordering::Relaxed) > asked
    });
    let before = failed_pulls();
    // SAFETY: kill(2) on our own child's PID with a valid signal number.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    for _ in 0..20 {
        assert!(answers(), "answers while the control plane is silent");
        assert_eq!(soa_serial(address), 10);
        std::thread::sleep(Duration::from_millis(25));
    }
    wait("the silent pull timed out", &|| failed_pulls() > before);
    plane.set(Serve::Good(11));
    wait("the next good snapshot was taken", &|| {
        soa_serial(address) == 11
    });
    assert!(answers());

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(dir);
}
