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
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use super::Shared;
use super::metrics::LocalCounters;
use crate::dns::answer::{self, Client, Context, Limited, RateLimit, Transport};
use crate::dns::cookie::CookieSecrets;
use crate::dns::rrl::RateLimiter;

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
    /// IP_FREEBIND: bind an address this host does not have (yet), such as
    /// an anycast address configured after the daemon starts.
    pub freebind: bool,
}

impl Default for UdpSettings {
    /// The `timepool dns` defaults.
    fn default() -> Self {
        UdpSettings {
            batch: 64,
            recv_buffer: None,
            send_buffer: None,
            freebind: false,
        }
    }
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
            set_buffer_size(&socket, Buffer::Receive, size)?;
        }
        if let Some(size) = settings.send_buffer {
            set_buffer_size(&socket, Buffer::Send, size)?;
        }
        if settings.freebind {
            set_freebind(&socket, address)?;
        }
        if address.ip().is_unspecified() {
            // A wildcard socket must answer from the address each query
            // was sent to (see `reply_from_destination`).
            receive_destination_address(&socket, address)?;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    Receive,
    Send,
}

/// SO_RCVBUF (SO_SNDBUF) of `size` bytes. The kernel silently caps those
/// at net.core.rmem_max (wmem_max), 208 KiB on many systems, far below
/// what a busy node wants (the soak run: a GeoIP reload slowed the worker
/// for a few hundred ms and 4 MiB overflowed). As Knot and NSD do, a
/// capped size is asked again with SO_RCVBUFFORCE (SO_SNDBUFFORCE), which
/// the limit does not bind, for a process with CAP_NET_ADMIN; without it
/// the capped size stays and a warning (once per process and buffer, not
/// per socket) says how to get the rest.
pub fn set_buffer_size(socket: &Socket, buffer: Buffer, size: usize) -> io::Result<()> {
    static WARNED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    let (force, name, sysctl, warned) = match buffer {
        Buffer::Receive => (
            libc::SO_RCVBUFFORCE,
            "--udp-recv-buffer",
            "net.core.rmem_max",
            &WARNED[0],
        ),
        Buffer::Send => (
            libc::SO_SNDBUFFORCE,
            "--udp-send-buffer",
            "net.core.wmem_max",
            &WARNED[1],
        ),
    };
    // Checked first: socket2 passes the size on as a C int, where a larger
    // one would wrap.
    let Ok(value) = libc::c_int::try_from(size) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} {size}: larger than {}", libc::c_int::MAX),
        ));
    };
    let set = match buffer {
        Buffer::Receive => socket.set_recv_buffer_size(size),
        Buffer::Send => socket.set_send_buffer_size(size),
    };
    set.map_err(|e| io::Error::new(e.kind(), format!("{name} {size}: {e}")))?;
    // Linux reports twice the size asked (the rest is its bookkeeping).
    if buffer_size(socket, buffer)? >= size.saturating_mul(2) {
        return Ok(());
    }
    // SAFETY: the descriptor is an open socket; the option value is a
    // c_int that lives across the call, and its size is given.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EPERM) {
        return Err(io::Error::new(
            error.kind(),
            format!("{name} {size} beyond {sysctl}: {error}"),
        ));
    }
    if !warned.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            asked = size,
            got = buffer_size(socket, buffer)? / 2,
            "{name} capped by {sysctl}: raise it (sysctl -w {sysctl}={size}) or give the daemon CAP_NET_ADMIN"
        );
    }
    Ok(())
}

/// The buffer's size as the kernel reports it (twice the usable size).
pub fn buffer_size(socket: &Socket, buffer: Buffer) -> io::Result<usize> {
    match buffer {
        Buffer::Receive => socket.recv_buffer_size(),
        Buffer::Send => socket.send_buffer_size(),
    }
}

/// IP_FREEBIND (IPV6_FREEBIND): the bind succeeds for an address not (yet)
/// on any interface.
pub fn set_freebind(socket: &Socket, address: SocketAddr) -> io::Result<()> {
    let result = if address.is_ipv6() {
        socket.set_freebind_v6(true)
    } else {
        socket.set_freebind_v4(true)
    };
    result.map_err(|e| io::Error::new(e.kind(), format!("--freebind on {address}: {e}")))
}

/// Ask the kernel for each datagram's destination address (IP_PKTINFO,
/// IPV6_RECVPKTINFO) as ancillary data.
fn receive_destination_address(socket: &Socket, address: SocketAddr) -> io::Result<()> {
    let (level, option) = if address.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is an open socket; the option value is a
    // c_int that lives across the call, and its size is given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!("cannot ask for destination addresses on UDP {address}: {error}"),
        ));
    }
    Ok(())
}

/// Room for one control message with an in_pktinfo or in6_pktinfo
/// (CMSG_SPACE of 20 bytes is 40 on Linux), aligned as cmsghdr needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct ControlBuffer([u8; 64]);

/// The buffers of one worker, allocated once. The message headers point
/// into the other vectors, which are never resized after `new`.
struct Buffers {
    queries: Vec<u8>,
    responses: Vec<u8>,
    peers: Vec<libc::sockaddr_storage>,
    /// Each query's destination address as the kernel gave it (wildcard
    /// sockets only); the response to it is sent with the same buffer.
    controls: Vec<ControlBuffer>,
    query_iovecs: Vec<libc::iovec>,
    response_iovecs: Vec<libc::iovec>,
    query_headers: Vec<libc::mmsghdr>,
    response_headers: Vec<libc::mmsghdr>,
    /// Whether the socket is a wildcard one (controls in use).
    destination_addresses: bool,
}

impl Buffers {
    fn new(batch: usize, response_size: usize, destination_addresses: bool) -> Box<Buffers> {
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
            controls: vec![ControlBuffer([0; 64]); if destination_addresses { batch } else { 0 }],
            query_iovecs: vec![iovec; batch],
            response_iovecs: vec![iovec; batch],
            query_headers: vec![header; batch],
            response_headers: vec![header; batch],
            destination_addresses,
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
            if destination_addresses {
                header.msg_control = b.controls[i].0.as_mut_ptr().cast();
                header.msg_controllen = size_of::<ControlBuffer>() as _;
            }
            let header = &mut b.response_headers[i].msg_hdr;
            header.msg_iov = &mut b.response_iovecs[i];
            header.msg_iovlen = 1;
        }
        buffers
    }

    /// Reset what the kernel overwrote in the receive headers.
    fn reset_receive(&mut self, count: usize) {
        let control_len = if self.destination_addresses {
            size_of::<ControlBuffer>()
        } else {
            0
        };
        for header in &mut self.query_headers[..count] {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = control_len as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
    }

    /// Set up the response to query `query` in response slot `slot`: to
    /// the query's source, and on a wildcard socket from the query's
    /// destination address.
    fn address_response(&mut self, query: usize, slot: usize) {
        let name_length = self.query_headers[query].msg_hdr.msg_namelen;
        let received = self.query_headers[query].msg_hdr;
        let response = &mut self.response_headers[slot].msg_hdr;
        response.msg_name = (&mut self.peers[query] as *mut libc::sockaddr_storage).cast();
        response.msg_namelen = name_length;
        if !self.destination_addresses {
            return;
        }
        let control_len = if received.msg_flags & libc::MSG_CTRUNC == 0 {
            reply_from_destination(&received)
        } else {
            0
        };
        if control_len == 0 {
            // No usable destination: the kernel picks the source, as for a
            // socket without PKTINFO.
            response.msg_control = std::ptr::null_mut();
            response.msg_controllen = 0;
        } else {
            response.msg_control = received.msg_control;
            response.msg_controllen = control_len as _;
        }
    }
}

/// Turn a received IP_PKTINFO / IPV6_PKTINFO control message, in place,
/// into the one that sends the response from the address the query was
/// sent to, and return the control length to send with (0: none found).
/// The interface index is cleared so the routing table picks the way
/// back, as Knot does, except for an IPv6 link-local address, which means
/// nothing without its interface.
// cmsg_len and msg_controllen are size_t on glibc, socklen_t on musl.
#[allow(clippy::unnecessary_cast)]
fn reply_from_destination(received: &libc::msghdr) -> usize {
    // SAFETY: `received` is a header the kernel filled in by recvmmsg:
    // msg_control points to its ControlBuffer and msg_controllen says how
    // much of it holds control messages, which CMSG_FIRSTHDR checks.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(received) };
    if cmsg.is_null() {
        return 0;
    }
    // SAFETY: CMSG_FIRSTHDR returned a header within the control buffer.
    let (level, kind, cmsg_len) =
        unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_DATA of a header within the buffer.
    let data = unsafe { libc::CMSG_DATA(cmsg) };
    let data_len = (cmsg_len as usize).saturating_sub(data as usize - cmsg as usize);
    if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
        if data_len < size_of::<libc::in_pktinfo>() {
            return 0;
        }
        // SAFETY: the message holds an in_pktinfo (its length was
        // checked); unaligned accesses make no assumption on its place.
        unsafe {
            let info = data.cast::<libc::in_pktinfo>();
            let mut pktinfo = info.read_unaligned();
            pktinfo.ipi_spec_dst = pktinfo.ipi_addr;
            pktinfo.ipi_ifindex = 0;
            info.write_unaligned(pktinfo);
        }
    } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
        if data_len < size_of::<libc::in6_pktinfo>() {
            return 0;
        }
        // SAFETY: as above, for an in6_pktinfo.
        unsafe {
            let info = data.cast::<libc::in6_pktinfo>();
            let mut pktinfo = info.read_unaligned();
            let address = Ipv6Addr::from(pktinfo.ipi6_addr.s6_addr);
            if !address.is_unicast_link_local() {
                pktinfo.ipi6_ifindex = 0;
            }
            info.write_unaligned(pktinfo);
        }
    } else {
        return 0;
    }
    received.msg_controllen as usize
}

/// What a UDP worker does with the packets of a batch. The DNS daemon and
/// the benchmark's null reflector share the same receive/send loop and
/// differ only here.
pub trait Responder {
    /// Called before the packets of a received batch (the DNS responder
    /// loads the zone table here, once per batch).
    fn start_batch(&mut self);
    /// Write the response to `query` into `out`; `None` sends nothing
    /// (the responder counts it).
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
    /// This worker's response rate limiter (`--rrl-rate`), with the clock
    /// it counts on.
    limiter: Option<RateLimiter>,
    clock: Instant,
}

/// The tables a batch is answered from, loaded once per batch, and the
/// time of the batch.
struct BatchTables {
    zones: arc_swap::Guard<Arc<crate::dns::zone::ZoneTable>>,
    geo: arc_swap::Guard<Arc<crate::shared::geo::GeoTable>>,
    cookies: arc_swap::Guard<Arc<CookieSecrets>>,
    /// Unix seconds.
    now: u32,
    /// Milliseconds on the limiter's clock.
    now_ms: u32,
}

impl DnsResponder {
    /// A responder counting into `shared.worker_counters[slot]`, which no
    /// other worker may use. `workers`: how many workers share the rate
    /// limit (those of this worker's address family).
    pub fn new(shared: Arc<Shared>, slot: usize, workers: usize) -> Self {
        let limiter = (shared.rrl.as_ref()).map(|settings| RateLimiter::new(settings, workers));
        DnsResponder {
            shared,
            tables: None,
            rng: SmallRng::from_rng(&mut rand::rng()),
            counts: LocalCounters::default(),
            slot,
            server_counts: None,
            limiter,
            clock: Instant::now(),
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
            cookies: self.shared.cookies.load(),
            now: unix_seconds(),
            // Wraps after 49 days; the limiter counts with wrapping
            // differences.
            now_ms: if self.limiter.is_some() {
                self.clock.elapsed().as_millis() as u32
            } else {
                0
            },
        });
    }

    fn respond(&mut self, query: &[u8], source: IpAddr, out: &mut [u8]) -> Option<usize> {
        let tables = self.tables.as_ref()?;
        let ctx = Context {
            table: &tables.zones,
            geo: &tables.geo,
            config: &self.shared.answer_config,
            cookies: &tables.cookies,
            now: tables.now,
        };
        let client = Client {
            source,
            transport: Transport::Udp,
        };
        let answered = match &mut self.limiter {
            Some(limiter) => {
                let limit = RateLimit {
                    limiter,
                    now_ms: tables.now_ms,
                };
                answer::respond_rate_limited(&ctx, query, client, &mut self.rng, out, limit)
            }
            None => answer::respond_with_outcome(&ctx, query, client, &mut self.rng, out),
        };
        let Some((length, outcome)) = answered else {
            self.counts.dropped();
            return None;
        };
        self.counts.record(&outcome);
        if outcome.limited == Limited::Dropped {
            return None;
        }
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
        let cookies = self.shared.cookies.load();
        self.server_counts = (self.shared.server_answers).switch_table(self.slot, &zones);
        drop((zones, geo, cookies));
    }
}

/// Now, in unix seconds (a server cookie's timestamp).
pub fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
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
    let wildcard = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    let mut buffers = Buffers::new(batch, response_size, wildcard);
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
            // `None`: no response (the responder counts why).
            if let Some(length) = responder.respond(query, source, out) {
                buffers.response_iovecs[to_send].iov_len = length;
                buffers.address_response(i, to_send);
                to_send += 1;
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
        // Errors that a retry cannot mend (a reply from a broadcast or
        // multicast destination, a peer address the kernel refuses): skip
        // that response at once.
        let permanent = matches!(
            error.raw_os_error(),
            Some(
                libc::EINVAL
                    | libc::EADDRNOTAVAIL
                    | libc::EPERM
                    | libc::EACCES
                    | libc::EAFNOSUPPORT
            )
        );
        if permanent || failures > 3 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};

    /// The kernel's cap on a socket buffer, where this network namespace
    /// shows it.
    fn system_limit(name: &str) -> Option<usize> {
        let path = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Whether this thread may pass the cap (CAP_NET_ADMIN, bit 12 of the
    /// effective set; root in a container may lack it).
    fn may_pass_the_limit() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let effective = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("CapEff in /proc/self/status");
        effective & (1 << 12) != 0
    }

    #[test]
    fn a_buffer_beyond_the_system_limit_is_forced_when_allowed() {
        for (buffer, limit) in [(Buffer::Receive, "rmem_max"), (Buffer::Send, "wmem_max")] {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
            // Within the limit: exactly what was asked.
            set_buffer_size(&socket, buffer, 65536).expect("set");
            assert_eq!(buffer_size(&socket, buffer).expect("get"), 2 * 65536);
            let Some(max) = system_limit(limit) else {
                eprintln!("net.core.{limit} is not visible here; only the small size is checked");
                continue;
            };
            let wanted = max * 4;
            set_buffer_size(&socket, buffer, wanted).expect("set");
            let got = buffer_size(&socket, buffer).expect("get") / 2;
            if may_pass_the_limit() {
                assert!(got >= wanted, "{buffer:?}: {got} < {wanted}");
            } else {
                assert!(got >= max, "{buffer:?}: {got} < {max}");
            }
        }
    }

    #[test]
    fn a_buffer_larger_than_a_c_int_is_refused_not_wrapped() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
        let before = buffer_size(&socket, Buffer::Receive).expect("get");
        // 2^32 as a C int is 0: set, it would shrink the buffer to the minimum.
        let error = set_buffer_size(&socket, Buffer::Receive, 1 << 32).expect_err("too large");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("--udp-recv-buffer"), "{error}");
        assert_eq!(buffer_size(&socket, Buffer::Receive).expect("get"), before);
    }
}
