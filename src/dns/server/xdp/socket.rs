//! One AF_XDP socket: its UMEM (the frames the kernel and the worker
//! share) and its four rings, set up with the calls of
//! Documentation/networking/af_xdp.rst. The rings are single-producer,
//! single-consumer queues in memory shared with the kernel: the worker
//! that owns the socket is the only one on its side, so the indexes it
//! owns are plain fields, and the other side's are read with Acquire and
//! its own published with Release.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A frame of the UMEM: room for an Ethernet frame of a 1500-byte MTU.
pub const FRAME_SIZE: u32 = 2048;

/// An anonymous or socket-backed mapping, unmapped on drop.
struct Mapping {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is memory of the process, valid on any thread; its
// owner (a socket, moved whole to the worker that serves it) is the only
// one to use it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// mmap(2) of `len` bytes; with `fd`, the socket's ring at `offset`.
    fn new(len: usize, fd: Option<libc::c_int>, offset: libc::off_t) -> io::Result<Mapping> {
        let flags = match fd {
            Some(_) => libc::MAP_SHARED | libc::MAP_POPULATE,
            None => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
        };
        // SAFETY: a fresh mapping chosen by the kernel (address NULL); the
        // result is checked before use.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.unwrap_or(-1),
                offset,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(start.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapping { start, len })
    }

    /// The address `offset` bytes in, when that is inside the mapping
    /// with `len` bytes after it.
    fn at(&self, offset: u64, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len as u64)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: offset + len is within the mapping (checked above), so
        // the pointer stays inside the same allocation.
        Some(unsafe { self.start.as_ptr().add(offset as usize) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by mmap with this length and is
        // unmapped once; nothing borrows it past its owner.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.len);
        }
    }
}

/// One ring: `T` is `u64` (fill, completion: frame addresses) or
/// `libc::xdp_desc` (rx, tx: address and length).
struct Ring<T> {
    _mapping: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
    /// This side's index (the producer's for fill and tx, the consumer's
    /// for rx and completion), and the last seen index of the other side.
    own: u32,
    seen: u32,
}

// SAFETY: a ring is moved to the worker thread that owns its socket and
// used only there; the kernel is the only other party.
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(
        fd: libc::c_int,
        size: u32,
        offsets: &libc::xdp_ring_offset,
        page_offset: libc::off_t,
        producing: bool,
    ) -> io::Result<Ring<T>> {
        let len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        let mapping = Mapping::new(len, Some(fd), page_offset)?;
        let outside = || io::Error::other("the kernel's ring offsets lie outside the ring");
        let word = |offset: u64| mapping.at(offset, 4).ok_or_else(outside);
        let producer = word(offsets.producer)? as *const AtomicU32;
        let consumer = word(offsets.consumer)? as *const AtomicU32;
        let flags = word(offsets.flags)? as *const AtomicU32;
        let entries = (mapping.at(offsets.desc, size as usize * std::mem::size_of::<T>()))
            .ok_or_else(outside)?
            .cast::<T>();
        // SAFETY: the kernel's offsets name aligned u32 indexes inside the
        // mapping, which lives as long as the ring.
        let (own, seen) = unsafe {
            let p = (*producer).load(Ordering::Acquire);
            let c = (*consumer).load(Ordering::Acquire);
            if producing { (p, c) } else { (c, p) }
        };
        Ok(Ring {
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
            own,
            seen,
            _mapping: mapping,
        })
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    // SAFETY (all the index reads below): the indexes are aligned u32s
    // inside the mapping the ring owns.

    /// Producer side: slots free for writing, at most `wanted`.
    fn free(&mut self, wanted: u32) -> u32 {
        let mut free = self.size() - self.own.wrapping_sub(self.seen);
        if free < wanted {
            // SAFETY: see above.
            self.seen = unsafe { (*self.consumer).load(Ordering::Acquire) };
            free = self.size() - self.own.wrapping_sub(self.seen);
        }
        free.min(wanted)
    }

    /// Producer side: write the next slot (after `free` said there is one).
    fn push(&mut self, value: T) {
        // SAFETY: the slot index is masked into the ring, and the slot is
        // free (the kernel consumed it), so only this side writes it.
        unsafe {
            self.entries
                .add((self.own & self.mask) as usize)
                .write(value)
        };
        self.own = self.own.wrapping_add(1);
    }

    /// Producer side: hand the pushed slots to the kernel.
    fn submit(&mut self) {
        // SAFETY: see above.
        unsafe { (*self.producer).store(self.own, Ordering::Release) };
    }

    /// Consumer side: entries ready, at most `wanted`.
    fn ready(&mut self, wanted: u32) -> u32 {
        let mut ready = self.seen.wrapping_sub(self.own);
        if ready < wanted {
            // SAFETY: see above.
            self.seen = unsafe { (*self.producer).load(Ordering::Acquire) };
            ready = self.seen.wrapping_sub(self.own);
        }
        ready.min(wanted)
    }

    /// Consumer side: the entry `index` places after the next unread one
    /// (below what `ready` said).
    fn peek(&self, index: u32) -> T {
        // SAFETY: the slot is masked into the ring and was published by
        // the kernel (below the producer index read with Acquire).
        unsafe {
            self.entries
                .add((self.own.wrapping_add(index) & self.mask) as usize)
                .read()
        }
    }

    /// Consumer side: give `count` read entries back to the kernel.
    fn release(&mut self, count: u32) {
        self.own = self.own.wrapping_add(count);
        // SAFETY: see above.
        unsafe { (*self.consumer).store(self.own, Ordering::Release) };
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: see above.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }
}

/// How many frames and ring slots a socket has (powers of two).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Frames in the UMEM: half for receiving, half for sending.
    pub frames: u32,
    /// Slots in each ring.
    pub ring: u32,
}

/// An AF_XDP socket bound to one queue of one interface.
pub struct XdpSocket {
    fd: OwnedFd,
    umem: Mapping,
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Frames free for replies (addresses in the UMEM).
    free_tx: Vec<u64>,
    /// Received frames not yet back in the fill ring (it had no room at
    /// that moment: the kernel may publish a frame on the rx ring before
    /// it releases its fill slot), posted first next time. Capacity for
    /// every receive frame, so it never grows.
    unposted: Vec<u64>,
    /// Where the receive frames start: the first half of the UMEM is for
    /// replies, the second half for receiving.
    receive_start: u64,
    /// Whether the kernel copies frames (no zero-copy driver support).
    pub copy_mode: bool,
}

fn set_option<T>(fd: libc::c_int, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live T whose size is given; the kernel copies it.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(())
}

/// getsockopt(2) of a SOL_XDP option into `value` (its starting value
/// stays in whatever an older kernel's shorter struct leaves out).
fn get_option<T: Copy>(fd: libc::c_int, name: libc::c_int, mut value: T) -> io::Result<T> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (T's size) into `value`.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

impl XdpSocket {
    /// A socket on `queue` of the interface `ifindex`, its UMEM of
    /// `sizes.frames` frames, half posted to the fill ring.
    pub fn open(ifindex: u32, queue: u32, sizes: Sizes) -> io::Result<XdpSocket> {
        if !sizes.frames.is_power_of_two()
            || !sizes.ring.is_power_of_two()
            || sizes.frames < 2
            || sizes.frames / 2 > sizes.ring
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AF_XDP frame and ring counts must be powers of two, with half the frames fitting a ring",
            ));
        }
        let context = |what: &str| {
            let what = what.to_owned();
            move |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("AF_XDP on interface {ifindex} queue {queue}: {what}: {e}"),
                )
            }
        };
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(context("socket")(io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just returned by socket(2), owned by no one.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = sizes.frames as usize * FRAME_SIZE as usize;
        let umem = Mapping::new(umem_len, None, 0).map_err(context("UMEM"))?;
        let registration = libc::xdp_umem_reg {
            addr: umem.start.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        set_option(raw, libc::XDP_UMEM_REG, &registration, "XDP_UMEM_REG")
            .map_err(context("UMEM registration"))?;
        for (option, name) in [
            (libc::XDP_UMEM_FILL_RING, "fill ring"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion ring"),
            (libc::XDP_RX_RING, "rx ring"),
            (libc::XDP_TX_RING, "tx ring"),
        ] {
            set_option(raw, option, &sizes.ring, name).map_err(context(name))?;
        }
        // SAFETY: zero is a valid xdp_mmap_offsets; getsockopt writes at
        // most `len` bytes into it.
        let offsets = unsafe {
            let mut offsets: libc::xdp_mmap_offsets = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
            if libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut offsets as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            ) != 0
            {
                return Err(context("XDP_MMAP_OFFSETS")(io::Error::last_os_error()));
            }
            // An older kernel's shorter struct has no `flags` offsets.
            if len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
                return Err(context("XDP_MMAP_OFFSETS")(io::Error::other(
                    "the kernel's ring layout is older than this build knows (5.4 or later)",
                )));
            }
            offsets
        };
        let mut fill = Ring::map(
            raw,
            sizes.ring,
            &offsets.fr,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
            true,
        )
        .map_err(context("fill ring mapping"))?;
        let completion = Ring::map(
            raw,
            sizes.ring,
            &offsets.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
            false,
        )
        .map_err(context("completion ring mapping"))?;
        let rx = Ring::map(raw, sizes.ring, &offsets.rx, libc::XDP_PGOFF_RX_RING, false)
            .map_err(context("rx ring mapping"))?;
        let tx = Ring::map(raw, sizes.ring, &offsets.tx, libc::XDP_PGOFF_TX_RING, true)
            .map_err(context("tx ring mapping"))?;

        // The second half of the frames waits in the fill ring for
        // received packets; the first half is for replies.
        let half = sizes.frames / 2;
        let posted = fill.free(half.min(sizes.ring));
        for frame in 0..posted {
            fill.push(u64::from(half + frame) * u64::from(FRAME_SIZE));
        }
        fill.submit();
        // Room for every reply frame, so returning one never allocates.
        let mut free_tx = Vec::with_capacity(half as usize);
        free_tx.extend((0..half).map(|f| u64::from(f) * u64::from(FRAME_SIZE)));

        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `address` is a live sockaddr_xdp whose size is given.
        let bound = unsafe {
            libc::bind(
                raw,
                (&address as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(context("bind")(io::Error::last_os_error()));
        }
        let copy_mode =
            Self::options(raw).is_ok_and(|flags| flags & libc::XDP_OPTIONS_ZEROCOPY == 0);
        Ok(XdpSocket {
            fd,
            umem,
            fill,
            completion,
            rx,
            tx,
            free_tx,
            unposted: Vec::with_capacity(half as usize),
            receive_start: u64::from(half) * u64::from(FRAME_SIZE),
            copy_mode,
        })
    }

    fn options(fd: libc::c_int) -> io::Result<u32> {
        let options = get_option(fd, libc::XDP_OPTIONS, libc::xdp_options { flags: 0 })?;
        Ok(options.flags)
    }

    pub fn raw_fd(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// A second descriptor of the socket, for reading its kernel
    /// statistics from another thread (the metrics page) while the worker
    /// owns the socket.
    pub fn statistics_handle(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Frames sent by the kernel go back to the free list (only reply
    /// frames: an address that is not one is ignored, never reused).
    pub fn reclaim_sent(&mut self) {
        let done = self.completion.ready(self.completion.size());
        for index in 0..done {
            let address = self.completion.peek(index);
            if address < self.receive_start
                && address.is_multiple_of(u64::from(FRAME_SIZE))
                && self.free_tx.len() < self.free_tx.capacity()
            {
                self.free_tx.push(address);
            }
        }
        self.completion.release(done);
    }

    /// Up to `max` received frames: (UMEM address, length) each.
    pub fn receive(&mut self, max: u32, into: &mut Vec<(u64, u32)>) {
        into.clear();
        let ready = self.rx.ready(max);
        for index in 0..ready {
            let desc = self.rx.peek(index);
            into.push((desc.addr, desc.len));
        }
        self.rx.release(ready);
    }

    /// A received frame's bytes (an address and length from `receive`),
    /// or None when the descriptor does not lie within one receive frame.
    pub fn frame(&self, address: u64, len: u32) -> Option<&[u8]> {
        let offset_in_frame = address % u64::from(FRAME_SIZE);
        if address < self.receive_start || offset_in_frame + u64::from(len) > u64::from(FRAME_SIZE)
        {
            return None;
        }
        let start = self.umem.at(address, len as usize)?;
        // SAFETY: inside one receive frame of the UMEM (checked), which
        // no reply borrows (those are in the other half); the kernel
        // handed it to us and does not write it until it is back in the
        // fill ring.
        Some(unsafe { std::slice::from_raw_parts(start, len as usize) })
    }

    /// Ask the CPU to start loading a received frame's first two cache
    /// lines (the headers and the question): the kernel wrote them on
    /// whichever CPU ran the receive, so the first read of each would
    /// otherwise wait for them in turn. A hint only; nothing is read.
    pub fn prefetch(&self, address: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(start) = self.umem.at(address, 128) {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let start = start.cast_const().cast::<i8>();
            // SAFETY: SSE is part of every x86_64 CPU; a prefetch reads
            // nothing and cannot fault, and both lines are inside the UMEM
            // (`at` checked 128 bytes).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start);
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(64));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = address;
    }

    /// A free frame to write a reply into: its address and bytes.
    pub fn reply_frame(&mut self) -> Option<(u64, &mut [u8])> {
        let address = self.free_tx.pop()?;
        let start = self.umem.at(address, FRAME_SIZE as usize)?;
        // SAFETY: a frame of the free list is a whole reply frame inside
        // the UMEM (checked when it came back), and no descriptor of either
        // ring holds it, so only this side uses it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(start, FRAME_SIZE as usize) };
        Some((address, bytes))
    }

    /// Give a frame that will not be sent back to the free list.
    pub fn unused_reply_frame(&mut self, address: u64) {
        self.free_tx.push(address);
    }

    /// Queue a written reply for sending; false (frame kept free) when
    /// the tx ring is full.
    pub fn queue_reply(&mut self, address: u64, len: u32) -> bool {
        if self.tx.free(1) == 0 {
            self.free_tx.push(address);
            return false;
        }
        self.tx.push(libc::xdp_desc {
            addr: address,
            len,
            options: 0,
        });
        true
    }

    /// Received frames back to the fill ring for new packets; those it
    /// has no room for now wait in `unposted` and go first next time, so
    /// no frame is ever lost.
    pub fn recycle(&mut self, frames: &[(u64, u32)]) {
        for (address, _) in frames {
            // Back to the start of its frame; only receive frames.
            let start = address - address % u64::from(FRAME_SIZE);
            if start >= self.receive_start && self.unposted.len() < self.unposted.capacity() {
                self.unposted.push(start);
            }
        }
        self.post_unposted();
    }

    /// Post the frames waiting in `unposted` that the fill ring has room
    /// for now; true when some still wait. A waiting frame is one the
    /// kernel cannot receive into: the worker must not sleep on them.
    pub fn post_unposted(&mut self) -> bool {
        if self.unposted.is_empty() {
            return false;
        }
        let room = self.fill.free(self.unposted.len() as u32) as usize;
        for &address in &self.unposted[..room] {
            self.fill.push(address);
        }
        self.unposted.drain(..room);
        self.fill.submit();
        !self.unposted.is_empty()
    }

    /// Publish the queued replies and wake the kernel when it asks for it.
    pub fn send_queued(&mut self) -> io::Result<()> {
        self.tx.submit();
        if !self.tx.needs_wakeup() {
            return Ok(());
        }
        // SAFETY: sendto with no data on our own AF_XDP socket: the kick
        // that makes the kernel drain the tx ring.
        let result = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            // The kernel is busy or out of room: it takes them next time.
            if matches!(
                error.raw_os_error(),
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
            ) {
                return Ok(());
            }
            return Err(error);
        }
        Ok(())
    }

    /// Whether the fill ring wants a wakeup (poll before reading again).
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }
}

/// What the kernel counted for one AF_XDP socket (XDP_STATISTICS): the
/// datagrams the XDP program redirected to it that it could not take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStatistics {
    /// Dropped on receive for want of a frame (the fill ring empty) or
    /// longer than a frame.
    pub rx_dropped: u64,
    /// Dropped on receive because the rx ring was full (the worker
    /// behind). Kernels before 5.9 do not count it.
    pub rx_ring_full: u64,
    /// Descriptors refused as invalid: ours on tx, the kernel's on rx.
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
}

/// The kernel's statistics of the AF_XDP socket `fd` (a
/// `statistics_handle`).
pub fn kernel_statistics(fd: &OwnedFd) -> io::Result<KernelStatistics> {
    // SAFETY: all-zero is a valid xdp_statistics (plain integers).
    let zero: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let raw = get_option(fd.as_raw_fd(), libc::XDP_STATISTICS, zero)?;
    Ok(KernelStatistics {
        rx_dropped: raw.rx_dropped,
        rx_ring_full: raw.rx_ring_full,
        rx_invalid_descs: raw.rx_invalid_descs,
        tx_invalid_descs: raw.tx_invalid_descs,
    })
}
