//! The benchmark's null reflector (`timepool bench-reflector`, used by
//! scripts/bench-dns.sh): the DNS workers' own sockets and
//! recvmmsg/sendmmsg loop, echoing each query with QR set. It measures what
//! the kernel and the loop cost without any DNS work.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::udp::{self, Responder, UdpSettings};

/// The reflector's responder: echo each query with QR set.
pub struct Reflector;

impl Responder for Reflector {
    fn start_batch(&mut self) {}

    fn respond(&mut self, query: &[u8], _source: IpAddr, out: &mut [u8]) -> Option<usize> {
        if query.len() < crate::dns::wire::HEADER_LEN || query.len() > out.len() {
            return None;
        }
        out[..query.len()].copy_from_slice(query);
        out[2] |= 0x80;
        Some(query.len())
    }

    fn end_batch(&mut self) {}
}

/// Run the benchmark's null reflector on `address` until `stopping` is set:
/// the same sockets and recvmmsg/sendmmsg loop as the DNS workers, echoing
/// each query with QR set. Returns the address bound.
pub fn start_reflector(
    address: SocketAddr,
    threads: usize,
    settings: UdpSettings,
    stopping: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let sockets = udp::bind_sockets(address, threads.max(1), &settings)?;
    let bound = sockets[0].local_addr()?;
    let mut workers = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let stopping = stopping.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("timepool-reflect-{i}"))
                .spawn(move || {
                    let worker = udp::Worker {
                        socket,
                        stopping: &stopping,
                        settings,
                        response_size: udp::MAX_QUERY_SIZE,
                        index: i,
                    };
                    udp::run_worker(worker, &mut Reflector, || {})
                })?,
        );
    }
    Ok((bound, workers))
}

/// `timepool bench-reflector`: run until SIGTERM or SIGINT.
pub fn run(listen: SocketAddr, threads: usize, batch: usize) -> Result<(), String> {
    let stopping = Arc::new(AtomicBool::new(false));
    let settings = UdpSettings {
        batch,
        ..UdpSettings::default()
    };
    let (bound, workers) = start_reflector(listen, threads, settings, stopping.clone())
        .map_err(|error| format!("cannot start the reflector: {error}"))?;
    tracing::info!(address = %bound, "null reflector listening");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(crate::shared::signals::shutdown());
    stopping.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}
