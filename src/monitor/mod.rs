//! The monitor wing: the monitoring agent (`timepool monitor`); the SNTP
//! it checks servers with is `shared::ntp`.
//!
//! In dependency order, each module using only those above it (and the
//! shared floor):
//!
//! - `agent`: asks the control plane for servers, checks them, submits
//!   the results in the monitor protocol (`shared::monitor_protocol`).
//!
//! Architecture invariant: imports only itself and `crate::shared`; talks
//! to the control plane only over its HTTP API, never through its code.

pub mod agent;
