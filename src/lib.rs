//! timepool: the serving system of a public NTP pool.
//!
//! See ARCHITECTURE.md for the code map and the invariants between modules.

pub mod db;
pub mod web;
