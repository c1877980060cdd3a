//! The `ntp` target; its property is in fuzz/checks/ntp.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::ntp::check(data));
