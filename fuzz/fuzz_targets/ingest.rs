//! The `ingest` target; its property is in fuzz/checks/ingest.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::ingest::check(data));
