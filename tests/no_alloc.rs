//! The answer path allocates nothing: a counting global allocator counts
//! every allocation made on this test's thread while `respond` answers a
//! mix of queries (pool names, AAAA, NXDOMAIN, ECS, NSID, CH, malformed).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use support::{Ask, query};
use timepool::dns::answer::{AnswerConfig, Client, Context, Transport, respond};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::wire::edns::NsidOption;

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// thread-locals are const-initialised Cells, so touching them does not
// allocate (no recursion into the allocator).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: as for alloc and dealloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_answer_path_does_not_allocate() {
    let table = timepool::dns::zone::load_file(&support::example_snapshot()).unwrap();
    let config = AnswerConfig {
        identity: Some(b"id".to_vec().into()),
        nsid: Some(NsidOption::new(b"node").unwrap()),
        ..AnswerConfig::default()
    };
    let ecs = Ask {
        subnet: Some((24, "85.10.1.0".parse().unwrap())),
        nsid: true,
        ..Ask::edns(1232)
    };
    let packets: Vec<Vec<u8>> = vec![
        query("pool.ntp.org", 1, &Ask::default()),
        query("pool.ntp.org", 1, &ecs),
        query("2.pool.ntp.org", 28, &ecs),
        query("3.de.pool.ntp.org", 1, &Ask::edns(4096)),
        query("nz.pool.ntp.org", 1, &Ask::default()),
        query("1.debian.pool.ntp.org", 1, &Ask::default()),
        query("nope.pool.ntp.org", 1, &Ask::default()),
        query("pool.ntp.org", 6, &Ask::default()),
        query("pool.ntp.org", 2, &Ask::default()),
        query("_country.pool.ntp.org", 16, &ecs),
        query("example.com", 1, &Ask::default()),
        query(
            "id.server",
            16,
            &Ask {
                class: Some(3),
                ..Ask::default()
            },
        ),
        vec![0xAB, 0xCD, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0],
    ];
    let geo = timepool::shared::geo::GeoTable::from_bytes(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/geo-test.mmdb"
        ))
        .unwrap(),
        "geo-test.mmdb",
    )
    .unwrap();
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table: &table,
        geo: &geo,
        config: &config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client {
        source: "198.51.100.1".parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut rng = SmallRng::seed_from_u64(3);
    let mut out = vec![0u8; 4096];
    let mut answered = 0;
    COUNTING.with(|c| c.set(true));
    for _ in 0..200 {
        for packet in &packets {
            if respond(&ctx, packet, client, &mut rng, &mut out).is_some() {
                answered += 1;
            }
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.with(Cell::get);
    assert_eq!(answered, 200 * packets.len());
    assert_eq!(allocations, 0, "allocations on the answer path");
}
