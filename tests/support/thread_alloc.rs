//! A global allocator that counts the allocations made, while counting
//! is on, on the threads whose names start with a given prefix: how the
//! no-allocation tests watch one kind of worker (`timepool-udp`,
//! `timepool-xdp`) while the rest of the daemon (tokio, the test's own
//! threads) allocates as it likes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct ThreadAllocator {
    /// The thread name's prefix (at most 15 bytes: the kernel's limit).
    prefix: &'static [u8],
    counting: AtomicBool,
    allocations: AtomicU64,
}

impl ThreadAllocator {
    pub const fn new(prefix: &'static [u8]) -> ThreadAllocator {
        ThreadAllocator {
            prefix,
            counting: AtomicBool::new(false),
            allocations: AtomicU64::new(0),
        }
    }

    /// Count from now on.
    pub fn start(&self) {
        self.counting.store(true, Ordering::SeqCst);
    }

    /// Stop counting; the allocations counted so far.
    pub fn stop(&self) -> u64 {
        self.counting.store(false, Ordering::SeqCst);
        self.allocations.load(Ordering::SeqCst)
    }

    fn count(&self) {
        if self.counting.load(Ordering::Relaxed) && self.on_watched_thread() {
            self.allocations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the calling thread's name starts with the prefix, read into
    /// a stack buffer (no allocation inside the allocator).
    fn on_watched_thread(&self) -> bool {
        let mut name = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes (with the NUL) into
        // the buffer, which is 16 bytes long.
        let read = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
        read == 0 && name.starts_with(self.prefix)
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics, which do not allocate.
unsafe impl GlobalAlloc for ThreadAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: as for alloc and dealloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
