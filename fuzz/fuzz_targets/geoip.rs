//! The `geoip` target; its property is in fuzz/checks/geoip.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::geoip::check(data));
