//! UDP workers: one thread per socket, each socket bound with SO_REUSEPORT
//! to the same address so the kernel spreads queries over them.
//!
//! A worker receives a batch with recvmmsg, loads the zone table once for
//! the batch, answers every packet into its own reused buffers and sends
//! the batch with sendmmsg. Nothing is allocated, locked or spawned per
//! query (ARCHITECTURE.md, "The DNS hot path"; NSD's handle_udp and Knot's udp-handler do
//! the same).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use super::Shared;
use super::metrics::LocalCounters;
use crate::dns::answer::{self, Client, Context, Transport};

/// Largest query accepted over UDP; a longer datagram is dropped (it is
/// flagged MSG_TRUNC). Real queries are well under 512 bytes.
pub const MAX_QUERY_SIZE: usize = 4096;

/// How long a blocked receive waits before the worker checks whether it
/// must stop.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Socket settings for the UDP workers.
#[derive(Clone, Copy, Debug)]
pub struct UdpSettings {
    /// Packets received and sent per system call.
    pub batch: usize,
    pub recv_buffer: Option<usize>,
    pub send_buffer: Option<usize>,
}

/// Bind `count` sockets to `address` with SO_REUSEPORT. With port 0 the
/// first socket picks the port and the others join it.
pub fn bind_sockets(
    address: SocketAddr,
    count: usize,
    settings: &UdpSettings,
) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut address = address;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        if address.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_port(true)?;
        if let Some(size) = settings.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        if let Some(size) = settings.send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        socket.set_read_timeout(Some(STOP_POLL))?;
        socket
            .bind(&address.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {address}: {e}")))?;
        let socket: UdpSocket = socket.into();
        address = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The buffers of one worker, allocated once. The message headers point
/// into the other vectors, which are never resized after `new`.
struct Buffers {
    queries: Vec<u8>,
    responses: Vec<u8>,
    peers: Vec<libc::sockaddr_storage>,
    query_iovecs: Vec<libc::iovec>,
    response_iovecs: Vec<libc::iovec>,
    query_headers: Vec<libc::mmsghdr>,
    response_headers: Vec<libc::mmsghdr>,
}

impl Buffers {
    fn new(batch: usize, response_size: usize) -> Box<Buffers> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs
        // for which all-zero bytes are a valid value.
        let (peer, iovec, header) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        let mut buffers = Box::new(Buffers {
            queries: vec![0; batch * MAX_QUERY_SIZE],
            responses: vec![0; batch * response_size],
            peers: vec![peer; batch],
            query_iovecs: vec![iovec; batch],
            response_iovecs: vec![iovec; batch],
            query_headers: vec![header; batch],
            response_headers: vec![header; batch],
        });
        let b = &mut *buffers;
        for i in 0..batch {
            b.query_iovecs[i] = libc::iovec {
                iov_base: b.queries[i * MAX_QUERY_SIZE..].as_mut_ptr().cast(),
                iov_len: MAX_QUERY_SIZE,
            };
            b.response_iovecs[i] = libc::iovec {
                iov_base: b.responses[i * response_size..].as_mut_ptr().cast(),
                iov_len: 0,
            };
            let header = &mut b.query_headers[i].msg_hdr;
            header.msg_name = (&mut b.peers[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut b.query_iovecs[i];
            header.msg_iovlen = 1;
            let header = &mut b.response_headers[i].msg_hdr;
            header.msg_iov = &mut b.response_iovecs[i];
            header.msg_iovlen = 1;
        }
        buffers
    }

    /// Reset what the kernel overwrote in the receive headers.
    fn reset_receive(&mut self, count: usize) {
        for header in &mut self.query_headers[..count] {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
    }
}

/// What a UDP worker does with the packets of a batch. The DNS daemon and
/// the benchmark's null reflector share the same receive/send loop and
/// differ only here.
pub trait Responder {
    /// Called before the packets of a received batch (the DNS responder
    /// loads the zone table here, once per batch).
    fn start_batch(&mut self);
    /// Write the response to `query` into `out`; `None` drops the packet.
    fn respond(&mut self, query: &[u8], source: IpAddr, out: &mut [u8]) -> Option<usize>;
    /// Called after the batch has been answered, before it is sent.
    fn end_batch(&mut self);
    /// A received packet was dropped unanswered (oversized).
    fn dropped(&mut self) {}
    /// The batch was sent; `failed` responses of it could not be.
    fn sent(&mut self, _failed: u64) {}
    /// Called once on the worker's thread before it serves: set up what
    /// the thread would otherwise set up on its first packet (thread-local
    /// state that allocates), so no packet ever pays for it.
    fn warm_up(&mut self) {}
}

/// The DNS daemon's responder: the answer path over the current table.
pub struct DnsResponder {
    shared: Arc<Shared>,
    tables: Option<BatchTables>,
    rng: SmallRng,
    /// This worker's counts, copied to its slot of
    /// `shared.worker_counters` after every batch.
    counts: LocalCounters,
    slot: usize,
    /// This worker's answers per server of the table in use.
    server_counts: Option<Arc<super::metrics::ServerCounts>>,
}

/// The tables a batch is answered from, loaded once per batch.
struct BatchTables {
    zones: arc_swap::Guard<Arc<crate::dns::zone::ZoneTable>>,
    geo: arc_swap::Guard<Arc<crate::shared::geo::GeoTable>>,
}

impl DnsResponder {
    /// A responder counting into `shared.worker_counters[slot]`, which no
    /// other worker may use.
    pub fn new(shared: Arc<Shared>, slot: usize) -> Self {
        DnsResponder {
            shared,
            tables: None,
            rng: SmallRng::from_rng(&mut rand::rng()),
            counts: LocalCounters::default(),
            slot,
            server_counts: None,
        }
    }
}

impl Responder for DnsResponder {
    fn start_batch(&mut self) {
        self.counts.batch();
        let zones = self.shared.table.load();
        if !(self.server_counts.as_ref()).is_some_and(|counts| counts.counts_for(&zones)) {
            // A new table (or the first batch): a new per-server array.
            self.server_counts = (self.shared.server_answers).switch_table(self.slot, &zones);
        }
        self.tables = Some(BatchTables {
            zones,
            geo: self.shared.geo.load(),
        });
    }

    fn respond(&mut self, query: &[u8], source: IpAddr, out: &mut [u8]) -> Option<usize> {
        let tables = self.tables.as_ref()?;
        let ctx = Context {
            table: &tables.zones,
            geo: &tables.geo,
            config: &self.shared.answer_config,
        };
        let client = Client {
            source,
            transport: Transport::Udp,
        };
        let (length, outcome) =
            answer::respond_with_outcome(&ctx, query, client, &mut self.rng, out)?;
        self.counts.record(&outcome);
        if let Some(server_counts) = &self.server_counts {
            server_counts.add(outcome.handed_out.as_slice());
        }
        Some(length)
    }

    fn end_batch(&mut self) {
        // Release the table before the send, so a reload's old table is
        // not held by a worker blocked in sendmmsg or recvmmsg.
        self.tables = None;
        if let Some(slot) = self.shared.worker_counters.get(self.slot) {
            slot.publish(&self.counts);
        }
    }

    fn dropped(&mut self) {
        self.counts.dropped();
    }

    fn sent(&mut self, failed: u64) {
        // Counted in this worker's own slot like everything else; published
        // at once only in the rare case there is something to publish.
        if failed > 0 {
            self.counts.send_errors(failed);
            if let Some(slot) = self.shared.worker_counters.get(self.slot) {
                slot.publish(&self.counts);
            }
        }
    }

    fn warm_up(&mut self) {
        // arc-swap gives each thread a debt node on its first load, and the
        // per-server counters are allocated per table: both here, not on
        // the first query this worker gets.
        let zones = self.shared.table.load();
        let geo = self.shared.geo.load();
        self.server_counts = (self.shared.server_answers).switch_table(self.slot, &zones);
        drop((zones, geo));
    }
}

/// One UDP worker: its socket and what it serves with.
pub struct Worker<'a> {
    pub socket: UdpSocket,
    /// Set when the daemon stops.
    pub stopping: &'a AtomicBool,
    pub settings: UdpSettings,
    /// Room for one response (the largest UDP payload answered).
    pub response_size: usize,
    /// The worker's number, for logs.
    pub index: usize,
}

/// Run one worker until `stopping` is set. `ready` is called once the
/// worker has allocated everything it will use (buffers, per-thread state)
/// and is about to serve.
pub fn run_worker<R: Responder>(worker: Worker<'_>, responder: &mut R, ready: impl FnOnce()) {
    let Worker {
        socket,
        stopping,
        settings,
        response_size,
        index: worker,
    } = worker;
    let batch = settings.batch.clamp(1, 1024);
    let response_size = response_size.max(512);
    let mut buffers = Buffers::new(batch, response_size);
    let fd = socket.as_raw_fd();
    responder.warm_up();
    ready();
    // Headers the kernel wrote into since they were last reset: all of them
    // at first, then those of the last batch received.
    let mut written = batch;
    while !stopping.load(Ordering::Relaxed) {
        buffers.reset_receive(written);
        // SAFETY: the headers point into `buffers`, which lives across the
        // call and is not moved (it is boxed); `batch` is their length.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                buffers.query_headers.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            // Nothing received; reset every header anyway, in case.
            written = batch;
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {
                    continue;
                }
                _ => {
                    tracing::warn!(worker, %error, "recvmmsg failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let received = (received as usize).min(batch);
        written = received;
        responder.start_batch();
        let mut to_send = 0usize;
        for i in 0..received {
            let header = &buffers.query_headers[i];
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                responder.dropped();
                continue;
            }
            let length = (header.msg_len as usize).min(MAX_QUERY_SIZE);
            let Some(source) = peer_address(&buffers.peers[i]) else {
                continue;
            };
            let query = &buffers.queries[i * MAX_QUERY_SIZE..i * MAX_QUERY_SIZE + length];
            let out =
                &mut buffers.responses[to_send * response_size..(to_send + 1) * response_size];
            match responder.respond(query, source, out) {
                Some(length) => {
                    buffers.response_iovecs[to_send].iov_len = length;
                    let name_length = buffers.query_headers[i].msg_hdr.msg_namelen;
                    let response = &mut buffers.response_headers[to_send].msg_hdr;
                    response.msg_name =
                        (&mut buffers.peers[i] as *mut libc::sockaddr_storage).cast();
                    response.msg_namelen = name_length;
                    to_send += 1;
                }
                None => responder.dropped(),
            }
        }
        responder.end_batch();
        let failed = send_all(fd, &mut buffers, to_send);
        responder.sent(failed);
    }
}

/// Send the first `count` responses, retrying after a partial send.
/// Returns how many could not be sent.
fn send_all(fd: i32, buffers: &mut Buffers, count: usize) -> u64 {
    let mut sent = 0usize;
    let mut failures = 0;
    let mut dropped = 0u64;
    while sent < count {
        // SAFETY: the headers from `sent` to `count` point into `buffers`
        // (iovecs and peer addresses set in this batch), which outlives
        // the call.
        let result = unsafe {
            libc::sendmmsg(
                fd,
                buffers.response_headers[sent..].as_mut_ptr(),
                (count - sent) as libc::c_uint,
                0,
            )
        };
        if result > 0 {
            sent += result as usize;
            continue;
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        failures += 1;
        if failures > 3 {
            // A response that cannot be sent (the peer's address refused,
            // buffers full) is dropped, not retried for ever.
            dropped += 1;
            sent += 1;
            failures = 0;
        }
    }
    dropped
}

fn peer_address(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}
