//! The web app's own accept loop (axum's `serve` has no knobs for these):
//! a cap on open connections (more are closed at accept, counted), TLS
//! when configured (the handshake bounded by the header timeout), HTTP/1.1
//! with a header-read timeout (a client that sends its request head too
//! slowly, or sits idle between requests, is cut off), the client's
//! address handed to the app as `ConnectInfo`, and a graceful stop that
//! lets requests in flight finish. Body reads and handlers are bounded by
//! the request timeout (a middleware of the router).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The most a connection buffers while reading a request head (hyper's
/// minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How one listener serves.
#[derive(Clone)]
pub struct ListenerConfig {
    /// TLS, or plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// The whole request head (and the TLS handshake) must arrive within
    /// this; also the longest a kept-alive connection may sit idle.
    pub header_timeout: Duration,
}

/// Connection counters (metrics).
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub accepted: AtomicU64,
    /// Closed at accept: over the connection cap.
    pub refused: AtomicU64,
    /// Failed TLS handshakes (including those that took too long).
    pub tls_failed: AtomicU64,
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    counters: Arc<ConnectionCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or the like: do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let counters = counters.clone();
        let watcher = graceful.watcher();
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, peer, app, header_timeout, watcher).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, header_timeout, watcher).await
                        }
                        Ok(Err(error)) => {
                            counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => {
                            counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "TLS handshake too slow");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// HTTP/1.1 on one connection.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(64)
        // hyper's default read buffer grows to ~400 KiB; a request head
        // needs far less, and 1 024 slow clients would hold 400 MiB.
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended");
    }
}
