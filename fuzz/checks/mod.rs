//! The properties the fuzz targets check, one module per target. Shared
//! with `cargo test`: tests/fuzz_corpus.rs replays every target's corpus
//! (fuzz/corpus/NAME) through [`TARGETS`], so every crash ever found stays
//! fixed. Each fuzz target (fuzz/fuzz_targets/NAME.rs) includes this whole
//! directory and calls its own module.

// Each target binary uses one module; the others are not dead in the test.
#![allow(dead_code)]

pub mod answer;
pub mod common;
pub mod geoip;
pub mod ingest;
pub mod ntp;
pub mod query_diff;
pub mod signature;
pub mod snapshot;
pub mod tcp;
pub mod xdp_frame;

/// A target's property: any bytes in, a panic when it does not hold.
pub type Check = fn(&[u8]);

/// Every target: its name (of its file in fuzz/fuzz_targets and its
/// corpus directory) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("answer", answer::check),
    ("geoip", geoip::check),
    ("ingest", ingest::check),
    ("ntp", ntp::check),
    ("query_diff", query_diff::check),
    ("signature", signature::check),
    ("snapshot", snapshot::check),
    ("tcp", tcp::check),
    ("xdp_frame", xdp_frame::check),
];
