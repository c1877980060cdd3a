//! The loop of one AF_XDP worker: take a batch of frames from the rx
//! ring, check each whole (`frame::parse`), answer it through the same
//! `Responder` as the socket workers, write the reply's headers around the
//! answer in a free frame, and send the batch. No allocation per frame:
//! the batch vector and the query copy are the worker's own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::frame::{self, Malformed};
use super::socket::{FRAME_SIZE, XdpSocket};
use crate::dns::server::udp::Responder;

/// Frames taken from the rx ring at once (as Knot).
pub const BATCH: u32 = 32;
/// The longest reply sent: an Ethernet frame of a 1500-byte MTU. A reply
/// that would need more is truncated by the answer path (TC, the client
/// retries over TCP), as for a client with a small EDNS buffer.
pub const MAX_FRAME: usize = 1514;
/// How long a worker sleeps in poll(2) without traffic before it checks
/// whether to stop.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long it sleeps while received frames wait to go back to the fill
/// ring.
const RETRY_POLL: Duration = Duration::from_millis(1);

/// What a worker counts beside its responder's counters.
#[derive(Debug, Default)]
pub struct XdpCounters {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub truncated_frames: AtomicU64,
    pub unexpected_frames: AtomicU64,
    pub bad_lengths: AtomicU64,
    pub too_short: AtomicU64,
    /// To a group MAC, or from a source no reply may go to.
    pub bad_sources: AtomicU64,
    /// Replies not sent: no free frame or the tx ring full.
    pub tx_full: AtomicU64,
    /// Failed wakeups of the kernel's transmit (sendto on the socket).
    pub kick_errors: AtomicU64,
}

/// One AF_XDP socket's counters, named for the metrics page.
#[derive(Debug)]
pub struct XdpQueue {
    pub interface: String,
    pub queue: u32,
    pub counters: XdpCounters,
    /// The socket's second descriptor, for its kernel statistics.
    pub statistics: std::os::fd::OwnedFd,
}

impl XdpCounters {
    fn malformed(&self, why: Malformed) {
        let counter = match why {
            Malformed::Truncated => &self.truncated_frames,
            Malformed::Unexpected => &self.unexpected_frames,
            Malformed::Length => &self.bad_lengths,
            Malformed::TooShort => &self.too_short,
            Malformed::Source => &self.bad_sources,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serve `socket` until `stop` is set. `ready` is called once everything
/// the loop uses is allocated.
pub fn serve<R: Responder>(
    socket: &mut XdpSocket,
    responder: &mut R,
    counters: &XdpCounters,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) {
    responder.warm_up();
    let mut received: Vec<(u64, u32)> = Vec::with_capacity(BATCH as usize);
    let mut query = [0u8; FRAME_SIZE as usize];
    // A failing kick (the interface gone, say) is logged once a minute at
    // most; the loop goes on, since the XSKMAP still sends our datagrams
    // here and the kernel takes the ring when it can again.
    let mut last_warning: Option<std::time::Instant> = None;
    ready();
    while !stop.load(Ordering::Relaxed) {
        socket.reclaim_sent();
        socket.receive(BATCH, &mut received);
        if received.is_empty() {
            // Frames the fill ring had no room for at the last batch go in
            // now: asleep with them out, the kernel could run short of
            // frames and drop datagrams. If the ring still has no room
            // (the kernel has not yet released its slots) the sleep is
            // short.
            let waiting = socket.post_unposted();
            wait_for_frames(
                socket.raw_fd(),
                if waiting { RETRY_POLL } else { IDLE_POLL },
            );
            continue;
        }
        counters
            .received
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        for &(address, _) in &received {
            socket.prefetch(address);
        }
        responder.start_batch();
        let mut failed = 0u64;
        // Counted here and added once per batch: one atomic add per batch
        // rather than per frame.
        let mut answered = 0u64;
        for &(address, len) in &received {
            let Some(bytes) = socket.frame(address, len) else {
                counters.malformed(Malformed::Truncated);
                continue;
            };
            let datagram = match frame::parse(bytes) {
                Ok(datagram) => datagram,
                Err(why) => {
                    counters.malformed(why);
                    continue;
                }
            };
            // The query is copied out of its frame (a few dozen bytes), so
            // that the frame can be borrowed for the reply meanwhile.
            let payload = datagram.payload();
            let query_len = payload.len();
            query[..query_len].copy_from_slice(&bytes[payload]);
            let Some((reply_address, reply)) = socket.reply_frame() else {
                counters.tx_full.fetch_add(1, Ordering::Relaxed);
                failed += 1;
                continue;
            };
            let header_len = datagram.reply_header_len();
            let out = &mut reply[header_len..MAX_FRAME];
            match responder.respond(&query[..query_len], datagram.source.ip(), out) {
                Some(answer_len) => {
                    let frame_len = frame::write_reply(&datagram, reply, answer_len);
                    if socket.queue_reply(reply_address, frame_len as u32) {
                        answered += 1;
                    } else {
                        counters.tx_full.fetch_add(1, Ordering::Relaxed);
                        failed += 1;
                    }
                }
                None => socket.unused_reply_frame(reply_address),
            }
        }
        socket.recycle(&received);
        counters.answered.fetch_add(answered, Ordering::Relaxed);
        responder.end_batch();
        if let Err(error) = socket.send_queued() {
            counters.kick_errors.fetch_add(1, Ordering::Relaxed);
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                last_warning = Some(std::time::Instant::now());
                tracing::warn!(%error, "AF_XDP transmit wakeup failed; retrying with the next batch");
            }
        }
        responder.sent(failed);
    }
}

/// Sleep until the rx ring has frames, or `timeout` has passed.
fn wait_for_frames(fd: libc::c_int, timeout: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count given; a failure (EINTR) only
    // means the loop comes round sooner.
    unsafe {
        libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int);
    }
}
