//! The `query_diff` target; its property is in fuzz/checks/query_diff.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::query_diff::check(data));
