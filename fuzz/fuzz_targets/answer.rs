//! The `answer` target (parse -> answer -> the response must parse with
//! `domain` and fit the buffer); its property is in fuzz/checks/answer.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::answer::check(data));
