//! SNTP: the packet header, the client check (the monitor's checks, and
//! the control plane's check of a server before it joins), and the test
//! responder.
//!
//! Architecture invariant: no web, database or DNS types; tokio UDP only.
//! The DNS path never imports this module (it is not in a DNS-only build).

pub mod client;
pub mod packet;
pub mod responder;

pub use client::{CheckConfig, CheckError, Measurement, check};
pub use packet::{KissCode, NtpTimestamp, Packet};
