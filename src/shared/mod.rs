//! The shared floor: what more than one wing reads.
//!
//! The two contracts between the wings live here, so that neither side of
//! a contract imports the other: the snapshot format (the control plane
//! writes it, the DNS daemon loads it) and the monitor protocol (the agent
//! sends it, the ingest API reads it). In dependency order, each module
//! using only those above it:
//!
//! - `dns_name`: DNS name limits and the dotted -> wire form of names;
//! - `netaddr`: which addresses are public unicast;
//! - `atomic_file`: replace a file atomically;
//! - `prometheus`: the Prometheus text format;
//! - `signals`: SIGTERM/SIGINT (stop) and SIGHUP (reload);
//! - `zones`: the pool's continents and the `gb` -> `uk` rule;
//! - `geo`: the GeoIP table (the DNS daemon locates clients with it, the
//!   web app places new servers);
//! - `snapshot`: the snapshot format, parsed and validated into a spec;
//! - `monitor_protocol`: the monitor protocol's results and error texts.
//!
//! Architecture invariant: nothing here imports a wing (`dns`, `control`,
//! `monitor`, `demo`); `tests/tidy.rs` checks that and the order above.

pub mod atomic_file;
pub mod dns_name;
pub mod geo;
pub mod monitor_protocol;
pub mod netaddr;
pub mod prometheus;
pub mod signals;
pub mod snapshot;
pub mod zones;
