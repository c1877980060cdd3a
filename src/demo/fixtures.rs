//! What the demo simulates and creates: the NTP servers (address, zone,
//! netspeed, behaviour), the logins and the monitors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

use crate::control::web::BoxError;
use crate::shared::ntp::packet::KissCode;
use crate::shared::ntp::responder::Behaviour;

/// One simulated NTP server.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedServer {
    pub address: IpAddr,
    /// The zone its operator chose (loopback has no GeoIP location).
    pub zone: &'static str,
    pub netspeed: i64,
    pub behaviour: Behaviour,
    /// What it simulates, for the table.
    pub simulates: &'static str,
    /// Whether the pool's rules let it into DNS.
    pub expected_in_dns: bool,
    /// Index into the operators (0: alice, 1: bob).
    pub operator: usize,
}

const HEALTHY: Behaviour = Behaviour::Offset {
    offset: 0.0,
    stratum: 2,
};

/// The simulated servers: 26 healthy ones in 10 countries on 6 continents
/// (one of them IPv6), and 5 that the scoring must keep out.
pub fn simulated_servers() -> Vec<SimulatedServer> {
    let healthy_v4: [(&str, i64); 25] = [
        ("de", 100_000),
        ("de", 50_000),
        ("de", 25_000),
        ("de", 12_000),
        ("de", 3_000),
        ("fr", 50_000),
        ("fr", 12_000),
        ("fr", 1_500),
        ("uk", 25_000),
        ("uk", 10_000),
        ("uk", 3_000),
        ("us", 250_000),
        ("us", 100_000),
        ("us", 25_000),
        ("us", 6_000),
        ("ca", 12_000),
        ("jp", 50_000),
        ("jp", 25_000),
        ("jp", 3_000),
        ("au", 25_000),
        ("au", 6_000),
        ("br", 12_000),
        ("br", 3_000),
        ("za", 6_000),
        ("nz", 1_500),
    ];
    let mut list = Vec::new();
    let mut next_host = 2u8;
    let mut v4 = || {
        let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, next_host));
        next_host += 1;
        address
    };
    for (i, (zone, netspeed)) in healthy_v4.iter().enumerate() {
        list.push(SimulatedServer {
            address: v4(),
            zone,
            netspeed: *netspeed,
            behaviour: HEALTHY,
            simulates: "healthy",
            expected_in_dns: true,
            operator: usize::from(i % 4 == 3),
        });
    }
    list.push(SimulatedServer {
        address: IpAddr::V6(Ipv6Addr::LOCALHOST),
        zone: "de",
        netspeed: 25_000,
        behaviour: HEALTHY,
        simulates: "healthy (IPv6)",
        expected_in_dns: true,
        operator: 0,
    });
    let bad = [
        (
            "de",
            Behaviour::Offset {
                offset: 0.2,
                stratum: 2,
            },
            "200 ms ahead (score stays near 5)",
        ),
        (
            "us",
            Behaviour::Offset {
                offset: -0.2,
                stratum: 2,
            },
            "200 ms behind (score stays near 5)",
        ),
        (
            "jp",
            Behaviour::Offset {
                offset: 5.0,
                stratum: 2,
            },
            "5 s ahead (score capped at -20)",
        ),
        (
            "fr",
            Behaviour::Kod(KissCode::Deny),
            "Kiss-o'-Death DENY (capped at -50)",
        ),
        ("uk", Behaviour::Silent, "silent (no reply)"),
    ];
    for (i, (zone, behaviour, simulates)) in bad.into_iter().enumerate() {
        list.push(SimulatedServer {
            address: v4(),
            zone,
            netspeed: 25_000,
            behaviour,
            simulates,
            expected_in_dns: false,
            operator: i % 2,
        });
    }
    list
}

pub const LOGINS: [(&str, &str); 3] = [
    ("staff", "staff@example.org"),
    ("operator", "alice@example.org"),
    ("operator", "bob@example.org"),
];
pub const MONITORS: [&str; 3] = ["demo-monitor-1", "demo-monitor-2", "demo-monitor-3"];

/// The monitor whose clock is off: its reference NTP server is this many
/// seconds ahead of the others', so its self-check fails and it submits
/// nothing (staff see why on /staff/monitors).
pub const SKEWED_MONITOR: &str = "demo-monitor-3";
pub const SKEWED_REFERENCE_OFFSET: f64 = 0.05;

/// A UDP port free on every simulated server's address.
pub fn common_free_port(servers: &[SimulatedServer]) -> Result<u16, BoxError> {
    for _ in 0..200 {
        let Ok(first) = UdpSocket::bind((servers[0].address, 0)) else {
            continue;
        };
        let port = first.local_addr()?.port();
        let held: Result<Vec<UdpSocket>, _> = servers[1..]
            .iter()
            .map(|server| UdpSocket::bind((server.address, port)))
            .collect();
        if held.is_ok() {
            return Ok(port);
        }
    }
    Err("no UDP port is free on all of the simulated servers' addresses (127.0.0.2-32, ::1)".into())
}
