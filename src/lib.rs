//! timepool: the serving system of a public NTP pool.
//!
//! Three wings on a shared floor (ARCHITECTURE.md has the code map and the
//! invariants between them; `tests/tidy.rs` checks the imports):
//!
//! - [`shared`]: what more than one wing reads: the snapshot format (the
//!   contract between the control plane and the DNS nodes), the monitor
//!   protocol (between the monitors and the control plane), the GeoIP
//!   table, the pool's zone names and small utilities. Always built.
//! - [`dns`] (feature `dns`): the authoritative GeoDNS daemon.
//! - [`control`] (feature `control`): the web app, the database, scoring
//!   and the zone builder.
//! - [`monitor`] (feature `monitor`): the monitoring agent and SNTP.
//! - [`demo`] (all three features): the whole pool in one process; the
//!   only module that imports every wing.

pub mod shared;

#[cfg(feature = "dns")]
pub mod dns;

#[cfg(feature = "control")]
pub mod control;

#[cfg(feature = "monitor")]
pub mod monitor;

#[cfg(all(feature = "dns", feature = "control", feature = "monitor"))]
pub mod demo;
