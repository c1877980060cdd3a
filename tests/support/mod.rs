//! Test helpers: queries built and responses parsed by the `domain` crate,
//! so every test is also a differential test of our wire layer.
#![allow(dead_code)]

pub mod thread_alloc;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use domain::base::iana::{Class, Rtype};
use domain::base::opt::AllOptData;
use domain::base::opt::cookie::{ClientCookie, Cookie, ServerCookie};
use domain::base::{Message, MessageBuilder, Name, ParsedName};
use domain::rdata::AllRecordData;

/// What a query carries besides its question.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    pub class: Option<u16>,
    /// EDNS payload size; `None` = no OPT record.
    pub edns: Option<u16>,
    pub edns_version: u8,
    pub nsid: bool,
    /// (source prefix, address)
    pub subnet: Option<(u8, IpAddr)>,
    pub id: u16,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// A COOKIE option: the client cookie and the server cookie sent back
    /// (empty for a first query).
    pub cookie: Option<([u8; 8], Vec<u8>)>,
}

impl Ask {
    pub fn edns(size: u16) -> Ask {
        Ask {
            edns: Some(size),
            ..Ask::default()
        }
    }
}

/// A query for `name`/`rtype`, built by `domain`.
pub fn query(name: &str, rtype: u16, ask: &Ask) -> Vec<u8> {
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(ask.id);
    builder.header_mut().set_rd(true);
    let mut question = builder.question();
    let name = Name::<Vec<u8>>::from_str(name).expect("test name");
    question
        .push((
            name,
            Rtype::from_int(rtype),
            Class::from_int(ask.class.unwrap_or(1)),
        ))
        .expect("push question");
    let mut additional = question.additional();
    if let Some(size) = ask.edns {
        additional
            .opt(|opt| {
                opt.set_udp_payload_size(size);
                opt.set_version(ask.edns_version);
                opt.set_dnssec_ok(ask.dnssec_ok);
                if let Some((client, server)) = &ask.cookie {
                    let server = (!server.is_empty()).then(|| ServerCookie::from_octets(server));
                    opt.cookie(Cookie::new(ClientCookie::from(*client), server))?;
                }
                if ask.nsid {
                    opt.client_nsid()?;
                }
                if let Some((prefix, address)) = ask.subnet {
                    opt.client_subnet(prefix, 0, address)?;
                }
                Ok(())
            })
            .expect("push opt");
    }
    additional.finish()
}

/// A record of a response, in presentation form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub owner: String,
    pub rtype: String,
    pub class: String,
    pub ttl: u32,
    pub data: String,
}

/// A response as `domain` reads it.
#[derive(Clone, Debug)]
pub struct Reply {
    pub id: u16,
    pub rcode: String,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub question: Option<(String, String)>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub edns: Option<EdnsReply>,
    pub size: usize,
}

#[derive(Clone, Debug)]
pub struct EdnsReply {
    pub udp_size: u16,
    pub version: u8,
    pub nsid: Option<Vec<u8>>,
    /// (family, source prefix, scope prefix, address)
    pub subnet: Option<(u8, u8, IpAddr)>,
    pub dnssec_ok: bool,
    /// The COOKIE option: client cookie and server cookie.
    pub cookie: Option<([u8; 8], Vec<u8>)>,
}

impl Reply {
    pub fn answer_data(&self) -> Vec<String> {
        self.answer.iter().map(|rr| rr.data.clone()).collect()
    }
}

fn records<'a>(section: domain::base::message::RecordSection<'a, Vec<u8>>) -> Vec<Rr> {
    let mut out = Vec::new();
    for record in section {
        let record = record.expect("domain parses the record");
        if record.rtype() == Rtype::OPT {
            continue;
        }
        let parsed = record
            .to_any_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>()
            .expect("domain parses the record data");
        out.push(Rr {
            owner: parsed.owner().to_string(),
            rtype: parsed.rtype().to_string(),
            class: parsed.class().to_string(),
            ttl: parsed.ttl().as_secs(),
            data: parsed.data().to_string(),
        });
    }
    out
}

/// Parse a response with `domain`; panics (failing the test) if it cannot.
pub fn parse_reply(bytes: &[u8]) -> Reply {
    let message = Message::from_octets(bytes.to_vec()).expect("domain parses the message");
    let header = message.header();
    let question = message
        .sole_question()
        .ok()
        .map(|q| (q.qname().to_string(), q.qtype().to_string()));
    let answer = records(message.answer().expect("answer section"));
    let authority = records(message.authority().expect("authority section"));
    let edns = message.opt().map(|opt| {
        let mut nsid = None;
        let mut subnet = None;
        let mut cookie = None;
        for option in opt.opt().iter::<AllOptData<_, _>>() {
            match option.expect("domain parses the option") {
                AllOptData::Nsid(value) => nsid = Some(value.as_slice().to_vec()),
                AllOptData::ClientSubnet(value) => {
                    subnet = Some((
                        value.source_prefix_len(),
                        value.scope_prefix_len(),
                        value.addr(),
                    ))
                }
                AllOptData::Cookie(value) => {
                    let server = value.server().map_or(Vec::new(), |s| s.as_ref().to_vec());
                    cookie = Some((value.client().into_octets(), server));
                }
                _ => {}
            }
        }
        EdnsReply {
            udp_size: opt.udp_payload_size(),
            version: opt.version(),
            nsid,
            subnet,
            dnssec_ok: opt.dnssec_ok(),
            cookie,
        }
    });
    Reply {
        id: header.id(),
        rcode: message.opt_rcode().to_string(),
        aa: header.aa(),
        tc: header.tc(),
        rd: header.rd(),
        ra: header.ra(),
        question,
        answer,
        authority,
        edns,
        size: bytes.len(),
    }
}

/// A fresh directory of this test process under the system's temporary
/// directory (emptied if an earlier run with the same pid left it).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("timepool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

pub fn example_snapshot() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.json")
}

/// Send a query over UDP and wait for the reply.
pub fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let bind = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(bind).expect("bind client socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    socket.send_to(packet, server).expect("send");
    let mut buffer = vec![0u8; 65535];
    match socket.recv(&mut buffer) {
        Ok(n) => Some(buffer[..n].to_vec()),
        Err(_) => None,
    }
}

/// Write one length-prefixed message on a TCP stream.
pub fn tcp_send(stream: &mut TcpStream, packet: &[u8]) {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).expect("tcp write");
}

/// Read one length-prefixed message from a TCP stream.
pub fn tcp_receive(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

pub fn tcp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // A server at its connection limit may have closed the connection
    // already: a failed write is "no answer", not a test panic.
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).ok()?;
    tcp_receive(&mut stream)
}

/// A `timepool dns` started from `command` (everything but `--listen`) on
/// 127.0.0.1 port 0, its log written to `log`: the daemon finds a port free
/// for both UDP and TCP itself, so no other process can take it between a
/// test's choice and the bind (seen under scripts/test.sh). Returns once
/// the node logs that it listens: the child, its DNS address, and its
/// metrics address when `--metrics-listen` was given. A node that exits or
/// is silent for 20 s fails the test with its log.
pub fn start_dns_node(
    mut command: std::process::Command,
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr, Option<SocketAddr>) {
    let mut child = command
        .args(["--listen", "127.0.0.1:0"])
        .stderr(std::fs::File::create(log).expect("node log"))
        .spawn()
        .expect("spawn timepool dns");
    let logged = || -> Option<(SocketAddr, Option<SocketAddr>)> {
        let text = std::fs::read_to_string(log).ok()?;
        let listening = text
            .lines()
            .find(|l| l.contains("listening on UDP and TCP"))?;
        let dns = listening
            .split("address=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let metrics = text
            .split("metrics at http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next()?.parse().ok());
        Some((dns, metrics))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((dns, metrics)) = logged() {
            return (child, dns, metrics);
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timepool dns did not start; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Prometheus page a metrics endpoint serves at /metrics, or None when
/// it cannot be had (not listening yet, an error status).
pub fn metrics_page(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

/// The value of the sample `name` (the metric's name and labels as the page
/// prints them, e.g. `timepool_dns_queries_total{rcode="NOERROR"}`).
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// `metric_value` of a page that must have it.
pub fn metric(page: &str, name: &str) -> f64 {
    metric_value(page, name).unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

/// A port on 127.0.0.1 free for both UDP and TCP at the time of the call
/// (for a child process that binds both; `timepool dns` itself is better
/// started by `start_dns_node`).
#[allow(dead_code)]
pub fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(address) = udp.local_addr() else {
            continue;
        };
        if std::net::TcpListener::bind(address).is_ok() {
            return address.port();
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// The serial of the SOA of `pool.ntp.org` a server answers with.
pub fn soa_serial(server: SocketAddr) -> u32 {
    let reply = parse_reply(
        &udp_exchange(server, &query("pool.ntp.org", 6, &Ask::default())).expect("SOA answer"),
    );
    reply.answer[0]
        .data
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

/// A small daemon on 127.0.0.1:0 (one UDP worker, metrics on) serving
/// `snapshot` under `trust`.
pub fn loopback_dns_config(
    snapshot: timepool::dns::server::SnapshotSource,
    trust: timepool::dns::server::SnapshotTrust,
) -> timepool::dns::server::DnsConfig {
    use timepool::dns::server::{TcpSettings, UdpSettings};
    timepool::dns::server::DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        pin_workers: false,
        snapshot,
        trust,
        geoip: None,
        reload_interval: Duration::from_millis(50),
        answer: timepool::dns::answer::AnswerConfig::default(),
        udp: UdpSettings {
            batch: 8,
            ..UdpSettings::default()
        },
        tcp: TcpSettings {
            idle_timeout: Duration::from_secs(5),
            max_connections: 16,
            ..TcpSettings::default()
        },
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        cookie_secret_file: None,
        rrl: None,
        xdp: None,
    }
}
