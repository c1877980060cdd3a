//! The zone builder: the database's eligible servers and approved vendor
//! zones -> a snapshot document (through the pure rules of
//! `crate::control::zone_rules`) -> validated -> published atomically with a new
//! serial, or not at all.
//!
//! Eligibility (zones/README.md, "Zone building"): in pool, score >= 10, netspeed > 0,
//! not due for deletion within 14 days. A server's country zone is the
//! operator's override, else the GeoIP zone (`gb` is `uk`); it is also in
//! the country's continent and `@`.
//!
//! Serials: a publish takes max(last serial + 1, unix time), so the serial
//! keeps growing even if the snapshots table is lost. When the content
//! (everything but `serial` and `generated`) is the same as the last
//! publish, nothing new is published and the serial stays. The numbered
//! labels are dealt with a random generator seeded from the inputs, so the
//! same inputs give the same content.
//!
//! The SQL it runs is in `db::snapshots`.
//!
//! Architecture invariant: the DNS daemon never sees this module; what it
//! produces is the snapshot file and `GET /api/v1/snapshot`, both checked
//! by `shared::snapshot::parse` (the validator the DNS daemon runs) before
//! anyone can read them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};

use crate::control::db::{Db, DbError, hex, snapshots};
use crate::control::zone_rules::{
    self, AdvertisedZone, DocumentSettings, EligibleServer, OriginSettings,
};
use crate::control::zone_tree;
use crate::shared::snapshot::{self, SnapshotError};
use crate::shared::zones;

/// What the builder publishes for, and where.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    pub origins: Vec<OriginSettings>,
    /// The snapshot file to replace on every publish; `None`: memory only.
    pub out: Option<PathBuf>,
}

impl BuildConfig {
    /// One origin with the pool's defaults; `nameservers` empty: `ns1.<origin>`.
    pub fn for_origin(origin: &str, nameservers: Vec<String>, out: Option<PathBuf>) -> Self {
        let nameservers = if nameservers.is_empty() {
            vec![format!("ns1.{origin}")]
        } else {
            nameservers
        };
        BuildConfig {
            origins: vec![OriginSettings::pool_defaults(origin, nameservers)],
            out,
        }
    }
}

/// A published snapshot as the endpoint serves it.
#[derive(Debug)]
pub struct PublishedSnapshot {
    pub serial: u32,
    pub bytes: Bytes,
    /// The same bytes, gzip-compressed once at publish.
    pub gzip: Bytes,
    /// Strong entity tag of `bytes`, quoted: `"<sha256 hex>"`.
    pub etag: String,
    pub published_at: i64,
    /// Servers in the snapshot (handed out by DNS), IPv4 and IPv6.
    pub servers_v4: usize,
    pub servers_v6: usize,
}

/// The current snapshot, shared by the builder task and the endpoint.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    current: ArcSwapOption<PublishedSnapshot>,
    /// Snapshots published (new serials) by this process.
    pub published: AtomicU64,
    /// Builds that failed (database, validation or file errors).
    pub failures: AtomicU64,
}

impl SnapshotStore {
    pub fn current(&self) -> Option<Arc<PublishedSnapshot>> {
        self.current.load_full()
    }

    fn set(&self, snapshot: PublishedSnapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }
}

/// Why a build did not publish.
#[derive(Debug)]
pub enum BuildError {
    Db(DbError),
    /// The document failed `snapshot::parse` (a bug in the builder, or
    /// data the rules do not expect); nothing was published.
    Invalid(SnapshotError),
    Io(std::io::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Db(error) => write!(f, "zone builder: database: {error}"),
            BuildError::Invalid(error) => write!(f, "zone builder: snapshot rejected: {error}"),
            BuildError::Io(error) => write!(f, "zone builder: {error}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<DbError> for BuildError {
    fn from(error: DbError) -> Self {
        BuildError::Db(error)
    }
}

/// What one build did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    /// New content, published with this serial.
    Published(u32),
    /// Same content as the last publish; the serial stays.
    Unchanged(u32),
}

impl BuildOutcome {
    pub fn serial(self) -> u32 {
        match self {
            BuildOutcome::Published(serial) | BuildOutcome::Unchanged(serial) => serial,
        }
    }
}

/// The builder's inputs, read from the database.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub servers: Vec<EligibleServer>,
    /// Approved vendor zone names (lowercase labels).
    pub vendors: Vec<String>,
}

impl Inputs {
    /// A digest of the inputs: equal digests give equal content.
    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for server in &self.servers {
            hasher.update(format!(
                "{} {} {} {:?} {:?}\n",
                server.id, server.address, server.weight, server.country, server.continent
            ));
        }
        for vendor in &self.vendors {
            hasher.update(format!("vendor {vendor}\n"));
        }
        hasher.finalize().into()
    }
}

/// The servers eligible for DNS at `now` (unix seconds), with their zones.
pub async fn eligible_servers(db: &Db, now: i64) -> Result<Vec<EligibleServer>, DbError> {
    let rows = snapshots::eligible_servers(db, now).await?;
    let mut servers = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(address) = row.address.parse::<IpAddr>() else {
            tracing::warn!(id = row.id, address = %row.address, "server address does not parse; left out of DNS");
            continue;
        };
        let (country, continent) = country_and_continent(row.zone.as_deref());
        servers.push(EligibleServer {
            id: row.id as u64,
            address,
            weight: u32::try_from(row.netspeed).unwrap_or(u32::MAX),
            country,
            continent,
        });
    }
    Ok(servers)
}

/// The country zone (`gb` read as `uk`) and its continent; an unknown or
/// missing zone: neither (the server is in `@` only).
fn country_and_continent(zone: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(zone) = zone.and_then(zone_tree::canonical) else {
        return (None, None);
    };
    let chain = zone_tree::with_parents(zone);
    match chain.as_slice() {
        [country, continent, "@"] => (Some(country.to_string()), Some(continent.to_string())),
        [continent, "@"] => (None, Some(continent.to_string())),
        _ => (None, None),
    }
}

/// Approved vendor zone names that can be aliases: lowercase letters,
/// digits and hyphens, not a number, not a zone's name.
pub async fn approved_vendors(db: &Db) -> Result<Vec<String>, DbError> {
    let mut names = Vec::new();
    for name in snapshots::approved_vendor_names(db).await? {
        let name = name.to_ascii_lowercase();
        let label_like = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.bytes().all(|b| b.is_ascii_digit())
            && name != zones::GREAT_BRITAIN_CODE;
        if !label_like || zone_tree::lookup(&name).is_some() {
            tracing::warn!(%name, "vendor zone name cannot be served; left out");
            continue;
        }
        names.push(name);
    }
    Ok(names)
}

pub async fn read_inputs(db: &Db, now: i64) -> Result<Inputs, DbError> {
    Ok(Inputs {
        servers: eligible_servers(db, now).await?,
        vendors: approved_vendors(db).await?,
    })
}

/// The snapshot document for these inputs (pure). Its content, serial and
/// `generated` aside, depends on the inputs and origins only.
pub fn document(
    inputs: &Inputs,
    origins: &[OriginSettings],
    serial: u32,
    generated: &str,
) -> serde_json::Value {
    let digest = inputs.digest();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let mut rng = SmallRng::seed_from_u64(u64::from_le_bytes(seed));
    // Every country the web app lists is in the snapshot, `uk` among them,
    // so its names (and `gb`) answer even with no servers of its own.
    let advertised: Vec<AdvertisedZone> = zone_tree::all_countries()
        .into_iter()
        .filter_map(|country| {
            Some(AdvertisedZone {
                name: country.zone.to_string(),
                parent: country.parent?.to_string(),
            })
        })
        .collect();
    let has_uk = advertised
        .iter()
        .any(|zone| zone.name == zones::GREAT_BRITAIN_ZONE);
    let mut aliases = BTreeMap::new();
    if let Some((alias, zone)) = zones::country_aliases(has_uk) {
        aliases.insert(alias.to_string(), zone.to_string());
    }
    for vendor in &inputs.vendors {
        aliases.insert(vendor.clone(), "@".to_string());
    }
    let settings = DocumentSettings {
        serial,
        generated,
        origins,
        aliases: &aliases,
        advertised: &advertised,
    };
    zone_rules::build_document(&settings, &inputs.servers, &mut rng)
}

/// SHA-256 hex of a document without `serial` and `generated`.
pub fn content_hash(document: &serde_json::Value) -> String {
    let mut content = document.clone();
    if let Some(object) = content.as_object_mut() {
        object.remove("serial");
        object.remove("generated");
    }
    hex(&Sha256::digest(content.to_string().as_bytes()))
}

fn generated_text(published_at: i64) -> String {
    format!(
        "timepool zone builder, {}",
        crate::control::timefmt::rfc3339(published_at)
    )
}

/// Serialize, validate and pack a document for serving.
fn finish(
    document: &serde_json::Value,
    published_at: i64,
) -> Result<PublishedSnapshot, BuildError> {
    let bytes = serde_json::to_vec_pretty(document)
        .map_err(|e| BuildError::Io(std::io::Error::other(e)))?;
    let spec = snapshot::parse(&bytes, "zone builder").map_err(BuildError::Invalid)?;
    let gzip = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(bytes.len() / 4),
            flate2::Compression::default(),
        );
        encoder
            .write_all(&bytes)
            .and_then(|()| encoder.finish())
            .map_err(BuildError::Io)?
    };
    let servers_v6 = spec.servers.iter().filter(|s| s.address.is_ipv6()).count();
    Ok(PublishedSnapshot {
        servers_v4: spec.servers.len() - servers_v6,
        servers_v6,
        serial: spec.serial,
        etag: format!("\"{}\"", hex(&Sha256::digest(&bytes))),
        bytes: Bytes::from(bytes),
        gzip: Bytes::from(gzip),
        published_at,
    })
}

/// Replace the output file unless it already holds these bytes.
fn write_out(config: &BuildConfig, bytes: &[u8]) -> Result<(), BuildError> {
    let Some(path) = &config.out else {
        return Ok(());
    };
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    crate::shared::atomic_file::write(path, bytes).map_err(BuildError::Io)
}

/// Build from the database and publish if the content changed. The
/// snapshot is validated before anything is written; the file is replaced
/// inside the transaction that records the serial, so a failed write
/// records nothing and a failed record leaves a file whose serial the next
/// publish still exceeds.
pub async fn build_and_publish(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    now: i64,
) -> Result<BuildOutcome, BuildError> {
    let inputs = read_inputs(db, now).await?;
    publish_inputs(db, config, store, &inputs, now).await
}

/// `build_and_publish` with inputs already read.
pub async fn publish_inputs(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    inputs: &Inputs,
    now: i64,
) -> Result<BuildOutcome, BuildError> {
    let draft = document(inputs, &config.origins, 1, "");
    let hash = content_hash(&draft);
    let last = snapshots::last_publish(db).await?;
    if let Some(last) = &last
        && last.content_hash == hash
    {
        // Same content: keep the serial. Render it as it was published
        // (same serial, same `generated`), for the file and the endpoint
        // after a restart.
        if store.current().is_none_or(|c| c.serial != last.serial)
            || config.out.as_ref().is_some_and(|p| !p.exists())
        {
            let document = document(
                inputs,
                &config.origins,
                last.serial,
                &generated_text(last.published_at),
            );
            let snapshot = finish(&document, last.published_at)?;
            write_out(config, &snapshot.bytes)?;
            store.set(snapshot);
        }
        return Ok(BuildOutcome::Unchanged(last.serial));
    }
    let now_serial = u32::try_from(now.max(1)).unwrap_or(u32::MAX);
    let serial = match &last {
        Some(last) => last.serial.saturating_add(1).max(now_serial),
        None => now_serial,
    };
    let document = document(inputs, &config.origins, serial, &generated_text(now));
    let snapshot = finish(&document, now)?;
    let mut tx = db.begin().await?;
    snapshots::record_publish(&mut tx, serial, now, &hash).await?;
    write_out(config, &snapshot.bytes)?;
    tx.commit().await?;
    tracing::info!(
        serial,
        servers = inputs.servers.len(),
        vendor_zones = inputs.vendors.len(),
        file = ?config.out,
        "zone snapshot published"
    );
    store.set(snapshot);
    store.published.fetch_add(1, Ordering::Relaxed);
    Ok(BuildOutcome::Published(serial))
}

/// How often the background builder looks.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Read the inputs this often to notice a change.
    pub check: Duration,
    /// After a change is seen, wait this long for related changes to land.
    pub debounce: Duration,
    /// Build at least this often, changed or not.
    pub rebuild: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            check: Duration::from_secs(2),
            debounce: Duration::from_secs(1),
            rebuild: Duration::from_secs(60),
        }
    }
}

/// The background builder of `timepool web`: builds at start, when the
/// eligible servers or vendor zones change (debounced), and at least every
/// `schedule.rebuild`. Errors are logged; the last good snapshot stays.
pub async fn run(db: Db, config: BuildConfig, store: Arc<SnapshotStore>, schedule: Schedule) {
    let mut built_from: Option<[u8; 32]> = None;
    let mut last_build: Option<tokio::time::Instant> = None;
    loop {
        if last_build.is_some() {
            tokio::time::sleep(schedule.check).await;
        }
        let due = last_build.is_none_or(|at| at.elapsed() >= schedule.rebuild);
        let mut inputs = match read_inputs(&db, crate::control::db::now()).await {
            Ok(inputs) => inputs,
            Err(error) => {
                tracing::warn!(%error, "zone builder: cannot read the servers");
                continue;
            }
        };
        let changed = built_from != Some(inputs.digest());
        if !due && !changed {
            continue;
        }
        if !due {
            // A change: let the rest of it land (an operator editing
            // several servers, a batch of scores), then read again.
            tokio::time::sleep(schedule.debounce).await;
            match read_inputs(&db, crate::control::db::now()).await {
                Ok(fresh) => inputs = fresh,
                Err(error) => {
                    tracing::warn!(%error, "zone builder: cannot read the servers");
                    continue;
                }
            }
        }
        last_build = Some(tokio::time::Instant::now());
        match publish_inputs(&db, &config, &store, &inputs, crate::control::db::now()).await {
            Ok(_) => built_from = Some(inputs.digest()),
            Err(error) => {
                store.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "zone snapshot not published; the previous one stays");
            }
        }
    }
}

/// `timepool build-zones`: one build from the database, for cron.
#[derive(clap::Args, Debug, Clone)]
pub struct BuildZonesArgs {
    /// Database URL: sqlite://PATH or postgres://...
    #[arg(long, env = "TIMEPOOL_DATABASE")]
    pub database: String,
    /// The snapshot file to replace (atomically, only when valid).
    #[arg(long)]
    pub out: PathBuf,
    /// The pool's DNS origin.
    #[arg(long, env = "TIMEPOOL_ORIGIN", default_value = "pool.ntp.org")]
    pub origin: String,
    /// The origin's NS names; repeat for several [default: ns1.<origin>].
    #[arg(
        long = "nameserver",
        env = "TIMEPOOL_NAMESERVERS",
        value_delimiter = ','
    )]
    pub nameservers: Vec<String>,
}

pub async fn build_zones_command(
    args: BuildZonesArgs,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let db = Db::connect(&args.database).await?;
    let origin = args.origin.trim_end_matches('.').to_ascii_lowercase();
    let config = BuildConfig::for_origin(&origin, args.nameservers, Some(args.out.clone()));
    let store = SnapshotStore::default();
    let outcome = build_and_publish(&db, &config, &store, crate::control::db::now()).await;
    db.pool.close().await;
    match outcome? {
        BuildOutcome::Published(serial) => {
            println!("{}: published serial {serial}", args.out.display())
        }
        BuildOutcome::Unchanged(serial) => {
            println!("{}: unchanged, serial {serial}", args.out.display())
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_a_country_override_or_geoip() {
        assert_eq!(
            country_and_continent(Some("gb")),
            (Some("uk".into()), Some("europe".into()))
        );
        assert_eq!(
            country_and_continent(Some("europe")),
            (None, Some("europe".into()))
        );
        assert_eq!(country_and_continent(Some("mars")), (None, None));
        assert_eq!(country_and_continent(None), (None, None));
    }
}
