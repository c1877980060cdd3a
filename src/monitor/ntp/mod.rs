//! SNTP for the monitor: the packet header, the client check, and the test
//! responder.
//!
//! Architecture invariant: no web, database or DNS types; tokio UDP only.
//! The DNS path never imports this module.

pub mod client;
pub mod packet;
pub mod responder;

pub use client::{CheckConfig, CheckError, Measurement, check};
pub use packet::{KissCode, NtpTimestamp, Packet};
