//! `GeoTable::lookup` must not touch the heap: the DNS hot path calls it
//! for every query. A counting global allocator (in this test binary only)
//! checks that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use timepool::shared::geo::GeoTable;
use timepool::shared::geo::testdata::write_test_database;

struct CountingAllocator;

thread_local! {
    // Per thread, because the test harness runs other threads meanwhile.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn lookup_does_not_allocate() {
    let table = GeoTable::from_bytes(write_test_database(), "test database").unwrap();
    let addresses: Vec<IpAddr> = [
        "81.2.69.160",
        "8.8.8.9",
        "255.255.255.255",
        "2a01:4f8::1",
        "::ffff:81.2.69.160",
        "2002:5102:45a0::1",
        "fe80::1",
    ]
    .iter()
    .map(|text| text.parse().unwrap())
    .collect();
    let empty = GeoTable::empty();

    let before = ALLOCATIONS.with(Cell::get);
    let mut located = 0;
    for _ in 0..1_000 {
        for &addr in &addresses {
            located += usize::from(table.lookup(addr).country.is_some());
            located += usize::from(empty.lookup(addr).country.is_some());
        }
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(after - before, 0, "lookups allocated");
    assert_eq!(located, 4_000);
}
