//! The DNS wing: the authoritative GeoDNS daemon (`timepool dns`).
//!
//! In dependency order, each module using only those above it (and the
//! shared floor):
//!
//! - `wire`: the DNS wire format (parse a query, write a response, records
//!   encoded at load, the OPT record);
//! - `select`: weighted random sampling of servers;
//! - `zone`: the compiled, immutable zone table (from a snapshot spec);
//! - `cookie`: DNS cookies (RFC 7873, server cookies as in RFC 9018);
//! - `rrl`: response rate limiting, a token bucket per client prefix;
//! - `answer`: query bytes in, response bytes out;
//! - `server`: sockets, threads, reloads, metrics;
//! - `cli`: the `dns` and `check-snapshot` commands.
//!
//! Architecture invariant: the DNS wing imports only itself and
//! `crate::shared`; never the control plane, the monitor, sqlx, axum or
//! minijinja (`tests/tidy.rs`). A build with `--no-default-features
//! --features dns` is this wing and the floor alone.

pub mod answer;
pub mod cli;
pub mod cookie;
pub mod rrl;
pub mod select;
pub mod server;
pub mod wire;
pub mod zone;
