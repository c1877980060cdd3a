//! DNS over TCP (RFC 7766) on tokio: two-byte length framing, several
//! queries per connection answered in order, an idle timeout, a limit on
//! connections, on connections per client (an IPv4 address, an IPv6 /64),
//! and on a connection's lifetime and queries. Every connection is its own
//! task with its own timeouts, so a slow or half-open client holds only
//! its own slot, and one client cannot hold them all. TCP is never rate
//! limited (RRL sends clients here).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Shared;
use crate::dns::answer::{self, Client, Context, Transport};

/// Largest response over TCP. Every answer of this server is far smaller;
/// a larger one would be sent truncated (TC) rather than grow the buffer.
pub const TCP_RESPONSE_SIZE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct TcpSettings {
    /// A connection with no complete query for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections served at once from one client (an IPv4 address or an
    /// IPv6 /64); more from it are closed at accept.
    pub max_per_client: usize,
    /// A connection is closed after this long, however busy...
    pub max_lifetime: Duration,
    /// ... or after answering this many queries.
    pub max_queries: u32,
}

impl Default for TcpSettings {
    /// The `timepool dns` defaults.
    fn default() -> Self {
        TcpSettings {
            idle_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_per_client: 16,
            max_lifetime: Duration::from_secs(120),
            max_queries: 1000,
        }
    }
}

/// Bind a TCP listener (SO_REUSEADDR so a restart can rebind at once;
/// IP_FREEBIND when asked, as for UDP).
pub fn bind_listener(
    address: SocketAddr,
    freebind: bool,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if freebind {
        super::udp::set_freebind(&socket, address)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&address.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind TCP {address}: {e}")))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The open connections of each client: what `max_per_client` counts.
/// Only clients with an open connection have an entry, so it holds at
/// most `max_connections`. Touched at accept and close, never per query.
#[derive(Default)]
struct ClientConnections {
    open: Mutex<HashMap<u128, usize>>,
}

/// A client as the per-client cap sees it: its IPv4 address, or the /64 of
/// its IPv6 address (one host often has a whole /64).
fn client_key(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) | (1 << 127),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)) | (1 << 127),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

impl ClientConnections {
    /// Take a slot for a connection of `client`, if it has fewer than
    /// `max` open.
    fn admit(self: &Arc<Self>, client: IpAddr, max: usize) -> Option<ClientSlot> {
        let key = client_key(client);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            key,
        })
    }
}

/// A client's connection slot, given back when the connection ends.
struct ClientSlot {
    clients: Arc<ClientConnections>,
    key: u128,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = (self.clients.open.lock()).unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Accept connections until the server stops.
/// `ready` is signalled once the accept loop is set up.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: TcpSettings,
    ready: std::sync::mpsc::Sender<()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let clients = Arc::new(ClientConnections::default());
    let _ = ready.send(());
    drop(ready);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off a little
                // instead of spinning.
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(client_slot) = clients.admit(peer.ip(), settings.max_per_client) else {
            shared
                .counters
                .tcp_refused_per_client
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            shared
                .counters
                .tcp_connections
                .fetch_add(1, Ordering::Relaxed);
            connection(stream, peer, &shared, settings).await;
            drop((slot, client_slot));
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    settings: TcpSettings,
) {
    let _ = stream.set_nodelay(true);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let client = Client {
        source: peer.ip(),
        transport: Transport::Tcp,
    };
    serve_frames(&mut stream, settings, |query, response| {
        let table = shared.table.load();
        let geo = shared.geo.load();
        let cookies = shared.cookies.load();
        let ctx = Context {
            table: &table,
            geo: &geo,
            config: &shared.answer_config,
            cookies: &cookies,
            now: super::udp::unix_seconds(),
        };
        let Some((answer_length, outcome)) =
            answer::respond_with_outcome(&ctx, query, client, &mut rng, response)
        else {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        (shared.server_answers).add_direct(&table, outcome.handed_out.as_slice());
        if let Some(slot) = shared.worker_counters.last() {
            slot.add(&outcome);
        }
        Some(answer_length)
    })
    .await;
}

/// One connection's framing (RFC 1035 section 4.2.2, RFC 7766): a two-byte
/// length, then the query; each answered in order by `answer` (the
/// answer's length in the buffer it is given, or None to close: not a
/// query, so nothing sensible can follow) and written with its length.
/// Ends when the peer closes, at the idle timeout or the end of the
/// connection's life, or after `max_queries`. Any byte stream will do: the
/// fuzz target feeds it bytes.
pub async fn serve_frames<S, A>(stream: &mut S, settings: TcpSettings, mut answer: A)
where
    S: AsyncRead + AsyncWrite + Unpin,
    A: FnMut(&[u8], &mut [u8]) -> Option<usize>,
{
    // A query is at most 65 535 bytes (its length is two bytes); the
    // buffer grows to the longest one sent and no further.
    let mut query = Vec::with_capacity(512);
    let mut response = vec![0u8; 2 + TCP_RESPONSE_SIZE];
    let idle = settings.idle_timeout;
    // Every read and write ends by the idle timeout and by the end of the
    // connection's life, whichever is sooner.
    let end_of_life = Instant::now() + settings.max_lifetime;
    let deadline = || (Instant::now() + idle).min(end_of_life);
    for _ in 0..settings.max_queries {
        let mut length = [0u8; 2];
        match tokio::time::timeout_at(deadline(), stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            // Closed, reset, idle for too long or at the end of its life.
            _ => return,
        }
        let length = usize::from(u16::from_be_bytes(length));
        query.resize(length, 0);
        match tokio::time::timeout_at(deadline(), stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(answer_length) = answer(&query, &mut response[2..]) else {
            return;
        };
        // The answer fits its buffer, so its length fits two bytes.
        let Ok(prefix) = u16::try_from(answer_length) else {
            return;
        };
        response[..2].copy_from_slice(&prefix.to_be_bytes());
        let write = stream.write_all(&response[..2 + answer_length]);
        match tokio::time::timeout_at(deadline(), write).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    // RFC 7766 section 6.2.3: a server may close a connection it has
    // served long enough; the client opens another.
}
