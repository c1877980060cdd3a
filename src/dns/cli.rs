//! The `timepool dns` and `timepool check-snapshot` commands: their flags,
//! turned into a [`DnsConfig`], and the daemon's run until a signal stops
//! it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::dns::answer::AnswerConfig;
use crate::dns::rrl::{Prefix, RrlSettings};
use crate::dns::server::{
    DnsConfig, DnsServer, PullClient, SnapshotSource, SnapshotTrust, TcpSettings, UdpSettings,
    reload_logged,
};
use crate::dns::wire::edns::NsidOption;
use crate::dns::zone;
use crate::shared::geo;
use crate::shared::signals::{Received, Signals};
use crate::shared::snapshot::SnapshotError;

#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// Address to serve UDP and TCP on; repeat for several (IPv4 and IPv6).
    #[arg(
        long,
        required = true,
        env = "TIMEPOOL_DNS_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,
    /// The zone snapshot file; reloaded when it changes and on SIGHUP.
    #[arg(
        long,
        env = "TIMEPOOL_SNAPSHOT",
        required_unless_present = "snapshot_url",
        conflicts_with = "snapshot_url"
    )]
    pub snapshot: Option<PathBuf>,
    /// Follow a control plane: poll its snapshot
    /// (http://HOST:PORT/api/v1/snapshot) with If-None-Match, swap on
    /// change, keep serving the last good one when it is unreachable.
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_URL")]
    pub snapshot_url: Option<String>,
    /// With --snapshot-url: where to keep the last good snapshot (replaced
    /// atomically), loaded at start when the control plane is down.
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_CACHE", requires = "snapshot_url")]
    pub snapshot_cache: Option<PathBuf>,
    /// With --snapshot-url: seconds between polls.
    #[arg(long, default_value_t = 3.0)]
    pub snapshot_poll: f64,
    /// With --snapshot-url: seconds a whole request may take.
    #[arg(long, default_value_t = 10.0)]
    pub snapshot_timeout: f64,
    /// Accept only snapshots signed by this Ed25519 public key (PEM, from
    /// `timepool admin gen-snapshot-key`); repeat to accept several during
    /// a key rotation. Applies to --snapshot (FILE.sig), --snapshot-url
    /// and the cache.
    #[arg(
        long = "snapshot-public-key",
        env = "TIMEPOOL_SNAPSHOT_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub snapshot_public_keys: Vec<PathBuf>,
    /// Accept a snapshot whose serial is lower than the one served (after
    /// a deliberate rollback on the control plane); without it a lower
    /// serial is refused as a replay.
    #[arg(long, env = "TIMEPOOL_ALLOW_SERIAL_ROLLBACK")]
    pub allow_serial_rollback: bool,
    /// With --snapshot-url: trust only the CA certificates in this PEM file
    /// (a private CA) instead of the system's roots.
    #[arg(long, env = "TIMEPOOL_CA_FILE", requires = "snapshot_url")]
    pub ca_file: Option<PathBuf>,
    /// With --snapshot-url: the name this node gives the control plane
    /// (its nodes page) [default: the host name].
    #[arg(long, env = "TIMEPOOL_NODE_NAME", requires = "snapshot_url")]
    pub node_name: Option<String>,
    /// With --snapshot-url: a file holding this node's token (from
    /// `timepool admin create-node`), sent with every pull; only over TLS
    /// or to loopback.
    #[arg(long, env = "TIMEPOOL_NODE_TOKEN_FILE", requires = "snapshot_url")]
    pub node_token_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9153).
    #[arg(long, env = "TIMEPOOL_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// MaxMind GeoLite2/GeoIP2 Country or City database (.mmdb). Default:
    /// /var/lib/GeoIP/GeoLite2-Country.mmdb or
    /// /usr/share/GeoIP/GeoLite2-Country.mmdb when present (see
    /// `shared::geo::DEFAULT_PATHS`); with none, every client is served the
    /// global zone. Reloaded when it changes.
    #[arg(long, env = "TIMEPOOL_GEOIP")]
    pub geoip: Option<PathBuf>,
    /// UDP worker threads per listen address (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin UDP worker i to CPU i.
    #[arg(long)]
    pub pin_workers: bool,
    /// Packets per recvmmsg/sendmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// SO_RCVBUF of the UDP sockets, bytes (default: the system's). Beyond
    /// net.core.rmem_max it needs CAP_NET_ADMIN (SO_RCVBUFFORCE), else it
    /// is capped with a warning.
    #[arg(long, env = "TIMEPOOL_UDP_RECV_BUFFER")]
    pub udp_recv_buffer: Option<usize>,
    /// SO_SNDBUF of the UDP sockets, bytes (default: the system's; beyond
    /// net.core.wmem_max as for the receive buffer).
    #[arg(long, env = "TIMEPOOL_UDP_SEND_BUFFER")]
    pub udp_send_buffer: Option<usize>,
    /// Seconds between checks of the snapshot file for a change.
    #[arg(long, default_value_t = 1.0)]
    pub reload_interval: f64,
    /// Close a TCP connection idle for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub tcp_idle_timeout: f64,
    /// TCP connections served at once.
    #[arg(long, default_value_t = 4096)]
    pub tcp_max_connections: usize,
    /// TCP connections served at once from one client (an IPv4 address, an
    /// IPv6 /64), so that one client cannot hold every slot.
    #[arg(long, default_value_t = 16)]
    pub tcp_max_per_client: usize,
    /// Close a TCP connection after this many seconds, however busy.
    #[arg(long, default_value_t = 120.0)]
    pub tcp_max_lifetime: f64,
    /// Close a TCP connection after answering this many queries.
    #[arg(long, default_value_t = 1000)]
    pub tcp_max_queries: u32,
    /// Answer UDP through AF_XDP on these interfaces: an XDP program hands
    /// the datagrams for the listen addresses and port to one AF_XDP
    /// socket per receive queue, past the kernel's UDP stack; everything
    /// else (TCP, ARP, other traffic) goes on to the kernel. Needs
    /// CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK
    /// (scripts/timepool-dns-xdp.conf); the start fails when the program cannot be attached, unless
    /// --xdp-fallback is given.
    #[arg(long, env = "TIMEPOOL_XDP", value_delimiter = ',')]
    pub xdp: Vec<String>,
    /// With --xdp: when XDP cannot be set up (no privilege, no driver
    /// support), warn and serve on sockets only instead of exiting.
    #[arg(long, env = "TIMEPOOL_XDP_FALLBACK", requires = "xdp")]
    pub xdp_fallback: bool,
    /// With --xdp: slots in each ring of an AF_XDP socket (a power of two,
    /// 512 to 32768). As many frames wait for datagrams, so a burst of that
    /// many is absorbed while the worker is busy; each socket locks twice
    /// as many 2 KiB frames (4096: 16 MiB per receive queue).
    #[arg(long, env = "TIMEPOOL_XDP_RING_SIZE", default_value_t = 4096, requires = "xdp",
          value_parser = parse_xdp_ring_size)]
    pub xdp_ring_size: u32,
    /// Bind listen addresses this host does not have yet (IP_FREEBIND),
    /// e.g. an anycast address configured after the daemon starts.
    #[arg(long, env = "TIMEPOOL_FREEBIND")]
    pub freebind: bool,
    /// Response rate limiting for UDP: responses per second allowed per
    /// client prefix (unset: off). Over it, every --rrl-slip-th response is
    /// sent truncated and the others are dropped; TCP is never limited, nor
    /// is a query with a valid DNS cookie.
    #[arg(long, env = "TIMEPOOL_RRL_RATE")]
    pub rrl_rate: Option<u32>,
    /// With --rrl-rate: every K-th limited response is sent truncated (TC,
    /// no answers; BADCOOKIE to a client that sent a cookie), so a real
    /// client can retry; 0 drops them all.
    #[arg(long, default_value_t = 2)]
    pub rrl_slip: u32,
    /// With --rrl-rate: the prefix length of an IPv4 client.
    #[arg(long, default_value_t = 24)]
    pub rrl_ipv4_prefix: u8,
    /// With --rrl-rate: the prefix length of an IPv6 client (at most 64).
    #[arg(long, default_value_t = 56)]
    pub rrl_ipv6_prefix: u8,
    /// With --rrl-rate: client prefixes tracked per UDP worker (16 bytes
    /// each, allocated at start).
    #[arg(long, default_value_t = 65536)]
    pub rrl_table_size: usize,
    /// With --rrl-rate: prefixes never limited (comma-separated, e.g.
    /// 192.0.2.0/24,2001:db8::/32).
    #[arg(long, value_delimiter = ',')]
    pub rrl_exempt: Vec<Prefix>,
    /// DNS cookie secrets (RFC 7873/9018): one secret of 32 hex digits per
    /// line, the current one first, optionally the previous one second
    /// (accepted during a rotation). Every node of an anycast site shares
    /// it; reloaded when it changes. Unset: a random secret per process.
    #[arg(long, env = "TIMEPOOL_COOKIE_SECRET_FILE")]
    pub cookie_secret_file: Option<PathBuf>,
    /// Answer `_status.<origin>` TXT (version, node, snapshot, uptime) to
    /// every client, not only to loopback.
    #[arg(long)]
    pub public_debug: bool,
    /// Answer to CH TXT id.server and hostname.bind (unset: REFUSED).
    #[arg(long, env = "TIMEPOOL_IDENTITY")]
    pub identity: Option<String>,
    /// Answer to CH TXT version.server and version.bind (unset: REFUSED).
    #[arg(long)]
    pub version_string: Option<String>,
    /// NSID (RFC 5001) sent to clients that ask for it.
    #[arg(long, env = "TIMEPOOL_NSID")]
    pub nsid: Option<String>,
    /// Smallest UDP payload size honoured (RFC 6891: values below 512 are 512).
    #[arg(long, default_value_t = 512)]
    pub edns_min_payload: u16,
    /// Largest UDP payload size used, whatever the client offers.
    #[arg(long, default_value_t = 1232)]
    pub edns_max_payload: u16,
}

/// `timepool check-snapshot FILE [--public-key KEY]...`: validate, print
/// every problem; with keys, check `FILE.sig` first.
pub fn check_snapshot(file: &std::path::Path, public_keys: &[PathBuf]) -> ExitCode {
    let table = if public_keys.is_empty() {
        match zone::load_file(file) {
            Ok(table) => table,
            Err(SnapshotError::Invalid { source, problems }) => {
                println!("{source}: {} problem(s)", problems.len());
                for problem in problems {
                    println!("{problem}");
                }
                return ExitCode::FAILURE;
            }
            Err(error) => {
                println!("{error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        // The signature is checked on the bytes that are then validated
        // (one read of the file).
        let trust = match snapshot_trust(public_keys, false) {
            Ok(trust) => trust,
            Err(message) => {
                println!("{message}");
                return ExitCode::FAILURE;
            }
        };
        match trust.accept_file(file) {
            Ok(table) => {
                println!("{}: signature good", file.display());
                table
            }
            Err(rejection) => {
                println!("{rejection}");
                return ExitCode::FAILURE;
            }
        }
    };
    println!(
        "{}: valid, serial {}, {} servers, {} zones, {} origin(s)",
        file.display(),
        table.serial,
        table.servers.len(),
        table.zones.len(),
        table.origins.len()
    );
    ExitCode::SUCCESS
}

/// The pinned public keys, read.
fn snapshot_trust(keys: &[PathBuf], allow_serial_rollback: bool) -> Result<SnapshotTrust, String> {
    let keys = keys
        .iter()
        .map(|path| {
            crate::shared::snapshot::signature::PublicKey::read_file(path)
                .map_err(|e| format!("--snapshot-public-key {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    for key in &keys {
        tracing::info!(key = %key.id(), "snapshots must be signed by a pinned key");
    }
    Ok(SnapshotTrust {
        keys,
        allow_serial_rollback,
    })
}

/// The host name, the default name of a node.
/// A secret from a file: its first line, trimmed.
fn read_secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(4096).read_to_string(&mut text))
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(format!("{what} {}: empty", path.display()));
    }
    Ok(secret)
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what}: {value} is not a duration"))
}

/// `timepool dns`: start, serve until SIGTERM or SIGINT, reload on SIGHUP.
pub fn run_dns(args: DnsArgs) -> ExitCode {
    let config = match dns_config(args) {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let server = match DnsServer::start(config) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shared = server.shared().clone();
    let outcome = server.block_on(async move {
        let mut signals = Signals::with_hangup()
            .map_err(|error| format!("cannot install signal handlers: {error}"))?;
        while signals.next().await == Received::Hangup {
            tracing::info!("SIGHUP: reloading the snapshot");
            reload_logged(&shared).await;
        }
        Ok::<(), String>(())
    });
    tracing::info!("stopping");
    server.shutdown();
    match outcome {
        Some(Err(message)) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn dns_config(args: DnsArgs) -> Result<DnsConfig, String> {
    if args.edns_min_payload > args.edns_max_payload {
        return Err(format!(
            "--edns-min-payload {} is above --edns-max-payload {}",
            args.edns_min_payload, args.edns_max_payload
        ));
    }
    for (value, flag) in [
        (args.tcp_max_lifetime, "--tcp-max-lifetime"),
        (args.tcp_idle_timeout, "--tcp-idle-timeout"),
    ] {
        if !(0.1..=86_400.0).contains(&value) {
            return Err(format!("{flag} must be 0.1 to 86400 seconds, not {value}"));
        }
    }
    if args.edns_max_payload < 512 {
        return Err("--edns-max-payload must be at least 512".into());
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let bytes = |text: Option<String>| text.map(|t| t.into_bytes().into_boxed_slice());
    if let Some(url) = &args.snapshot_url
        && args.snapshot_public_keys.is_empty()
        && crate::shared::http_client::transport(url)
            .is_ok_and(|t| t != crate::shared::http_client::Transport::PlainLoopback)
    {
        tracing::warn!(
            "--snapshot-url {url} without --snapshot-public-key: any snapshot the URL hands out is served; pin the control plane's key"
        );
    }
    let snapshot = match (args.snapshot, args.snapshot_url) {
        (_, Some(url)) => SnapshotSource::Url {
            url,
            cache: args.snapshot_cache,
            poll: seconds(args.snapshot_poll, "--snapshot-poll")?,
            timeout: seconds(args.snapshot_timeout, "--snapshot-timeout")?,
            client: PullClient {
                ca_file: args.ca_file,
                node_name: args.node_name.or_else(crate::shared::process::host_name),
                node_token: args
                    .node_token_file
                    .as_deref()
                    .map(|path| read_secret(path, "--node-token-file"))
                    .transpose()?,
            },
        },
        (Some(file), None) => SnapshotSource::File(file),
        (None, None) => return Err("give --snapshot FILE or --snapshot-url URL".into()),
    };
    let rrl = args.rrl_rate.map(|rate| RrlSettings {
        rate,
        slip: args.rrl_slip,
        ipv4_prefix: args.rrl_ipv4_prefix,
        ipv6_prefix: args.rrl_ipv6_prefix,
        table_size: args.rrl_table_size,
        exempt: args.rrl_exempt,
    });
    if let Some(rrl) = &rrl {
        rrl.validate()?;
    }
    Ok(DnsConfig {
        cookie_secret_file: args.cookie_secret_file,
        rrl,
        xdp: (!args.xdp.is_empty()).then_some(crate::dns::server::xdp::XdpSettings {
            interfaces: args.xdp,
            fallback: args.xdp_fallback,
            ring_size: args.xdp_ring_size,
        }),
        metrics_listen: args.metrics_listen,
        listen: args.listen,
        threads,
        pin_workers: args.pin_workers,
        snapshot,
        trust: snapshot_trust(&args.snapshot_public_keys, args.allow_serial_rollback)?,
        geoip: args.geoip.or_else(geo::default_path),
        reload_interval: seconds(args.reload_interval, "--reload-interval")?,
        answer: AnswerConfig {
            identity: bytes(args.identity),
            version: bytes(args.version_string),
            nsid: args
                .nsid
                .map(|nsid| NsidOption::new(nsid.as_bytes()).map_err(|e| format!("--nsid: {e}")))
                .transpose()?,
            edns_min_payload: args.edns_min_payload,
            edns_max_payload: args.edns_max_payload,
            public_debug: args.public_debug,
            started_at: 0,
        },
        udp: UdpSettings {
            batch: args.batch,
            recv_buffer: args.udp_recv_buffer,
            send_buffer: args.udp_send_buffer,
            freebind: args.freebind,
        },
        tcp: TcpSettings {
            idle_timeout: seconds(args.tcp_idle_timeout, "--tcp-idle-timeout")?,
            max_connections: args.tcp_max_connections.max(1),
            max_per_client: args.tcp_max_per_client.max(1),
            max_lifetime: seconds(args.tcp_max_lifetime, "--tcp-max-lifetime")?,
            max_queries: args.tcp_max_queries.max(1),
        },
    })
}

/// `--xdp-ring-size`: a power of two from 512 to 32768.
fn parse_xdp_ring_size(text: &str) -> Result<u32, String> {
    let size: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if !size.is_power_of_two() || !(512..=32768).contains(&size) {
        return Err(format!("{size} is not a power of two from 512 to 32768"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::parse_xdp_ring_size;

    #[test]
    fn the_xdp_ring_size_is_a_power_of_two_in_range() {
        assert_eq!(parse_xdp_ring_size("512"), Ok(512));
        assert_eq!(parse_xdp_ring_size("32768"), Ok(32768));
        for bad in ["256", "65536", "3000", "0", "-1", "four", ""] {
            let error = parse_xdp_ring_size(bad).expect_err(bad);
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}
