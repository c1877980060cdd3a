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
//! - `encoding`: hexadecimal, and base64 for PEM files;
//! - `atomic_file`: replace a file atomically;
//! - `repeated_failure`: a failure counted each time, logged once per cause;
//! - `file_version`: notice that a file changed (inode, length, mtime);
//! - `process`: umask 077 and the open-file limit, set at start;
//! - `prometheus`: the Prometheus text format;
//! - `signals`: SIGTERM/SIGINT (stop) and SIGHUP (reload);
//! - `zones`: the pool's continents and the `gb` -> `uk` rule;
//! - `geo`: the GeoIP table (the DNS daemon locates clients with it, the
//!   web app places new servers);
//! - `snapshot`: the snapshot format, parsed and validated into a spec,
//!   and its Ed25519 signatures;
//! - `monitor_protocol`: the monitor protocol's results and error texts;
//! - `ntp`: SNTP: the packet, the client check (the monitor's checks and
//!   the web app's check of a server before it joins), the test responder;
//! - `http_client`: the TLS client of the DNS node and the monitor (only
//!   in builds with one of them).
//!
//! Architecture invariant: nothing here imports a wing (`dns`, `control`,
//! `monitor`, `demo`); `tests/tidy.rs` checks that and the order above.

pub mod atomic_file;
pub mod dns_name;
pub mod encoding;
pub mod file_version;
pub mod geo;
#[cfg(any(feature = "dns", feature = "monitor"))]
pub mod http_client;
pub mod monitor_protocol;
pub mod netaddr;
#[cfg(any(feature = "control", feature = "monitor"))]
pub mod ntp;
pub mod process;
pub mod prometheus;
pub mod repeated_failure;
pub mod signals;
pub mod snapshot;
pub mod zones;
