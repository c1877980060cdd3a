//! The control plane wing: the web app (`timepool web`), its database,
//! the pool's scoring and the zone builder that publishes snapshots.
//!
//! In dependency order, each module using only those above it (and the
//! shared floor):
//!
//! - `timefmt`: dates and times as the pages and snapshots write them;
//! - `scoring`: the pool's scoring rules, pure functions;
//! - `alert_rules`: the pool's rules for bad servers (alerts, automatic
//!   removal), pure functions;
//! - `monitor_selector`: the pool's monitor selector (which monitors
//!   watch a server), pure functions;
//! - `zone_rules`: the pool's zone rules (eligible servers -> a snapshot
//!   document), pure functions;
//! - `zone_tree`: the pool's zones (continents, countries) for pages and
//!   forms;
//! - `db`: the database (SQLite or PostgreSQL), one module per table
//!   family; all the SQL of the control plane is here;
//! - `mail`: the mail sender (the queue in `db::mail` to SMTP);
//! - `zone_builder`: reads the database, applies the zone rules, checks
//!   and publishes the snapshot (file and `GET /api/v1/snapshot`);
//! - `web`: the axum app, the ingest API and the `admin` command.
//!
//! Architecture invariant: imports only itself and `crate::shared`. It
//! reaches the DNS nodes only through the snapshot and the monitors only
//! through the monitor protocol; it never answers DNS.

pub mod alert_rules;
pub mod db;
pub mod mail;
pub mod monitor_selector;
pub mod scoring;
pub mod timefmt;
pub mod web;
pub mod zone_builder;
pub mod zone_rules;
pub mod zone_tree;
