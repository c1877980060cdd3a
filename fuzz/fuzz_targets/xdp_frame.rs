//! The `xdp_frame` target; its property is in fuzz/checks/xdp_frame.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::xdp_frame::check(data));
