//! Fuzz the whole answer path: parse -> answer -> the response must parse
//! with `domain` and fit the buffer. See fuzz/check.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
