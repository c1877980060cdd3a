//! The `snapshot` target; its property is in fuzz/checks/snapshot.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::snapshot::check(data));
