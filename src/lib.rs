//! timepool: the serving system of a public NTP pool.
//!
//! See ARCHITECTURE.md for the code map and the invariants between modules.

#[cfg(feature = "web")]
pub mod agent;
pub mod answer;
pub mod atomic_file;
#[cfg(feature = "web")]
pub mod db;
#[cfg(feature = "web")]
pub mod demo;
pub mod geo;
pub mod monitor_protocol;
pub mod netaddr;
pub mod ntp;
pub mod prometheus;
pub mod scoring;
pub mod select;
pub mod server;
pub mod snapshot;
#[cfg(feature = "web")]
pub mod web;
pub mod wire;
pub mod zone;
pub mod zonebuild;
