//! DNS over TCP (RFC 7766) on tokio: two-byte length framing, several
//! queries per connection answered in order, an idle timeout, and a limit
//! on connections. Every connection is its own task with its own timeouts,
//! so a slow or half-open client holds only its own slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Shared;
use crate::dns::answer::{self, Client, Context, Transport};

/// Largest response over TCP. Every answer of this server is far smaller;
/// a larger one would be sent truncated (TC) rather than grow the buffer.
const TCP_RESPONSE_SIZE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct TcpSettings {
    /// A connection with no complete query for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
}

/// Bind a TCP listener (SO_REUSEADDR so a restart can rebind at once).
pub fn bind_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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
    socket.set_nonblocking(true)?;
    socket
        .bind(&address.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind TCP {address}: {e}")))?;
    socket.listen(1024)?;
    Ok(socket.into())
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
            drop(slot);
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
    let mut query = Vec::with_capacity(512);
    let mut response = vec![0u8; 2 + TCP_RESPONSE_SIZE];
    let client = Client {
        source: peer.ip(),
        transport: Transport::Tcp,
    };
    let idle = settings.idle_timeout;
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            // Closed, reset or idle for too long.
            _ => return,
        }
        let length = usize::from(u16::from_be_bytes(length));
        query.resize(length, 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let answered = {
            let table = shared.table.load();
            let geo = shared.geo.load();
            let ctx = Context {
                table: &table,
                geo: &geo,
                config: &shared.answer_config,
            };
            let answered =
                answer::respond_with_outcome(&ctx, &query, client, &mut rng, &mut response[2..]);
            if let Some((_, outcome)) = &answered {
                (shared.server_answers).add_direct(&table, outcome.handed_out.as_slice());
            }
            answered
        };
        let Some((answer_length, outcome)) = answered else {
            // Not a query (a response, or no header): nothing sensible can
            // follow on this stream.
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(slot) = shared.worker_counters.last() {
            slot.add(&outcome);
        }
        response[..2].copy_from_slice(&(answer_length as u16).to_be_bytes());
        let write = stream.write_all(&response[..2 + answer_length]);
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
