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
//! The SQL it runs is in `db::snapshots` and `db::leases`.
//!
//! Several instances on one database (PostgreSQL): exactly one builds and
//! publishes at a time, the holder of the `zone_builder` lease
//! (`db::leases`, renewed every check, taken over once it expires when
//! its holder dies); a publish commits only while its lease holds. The
//! published bytes and their signature are stored in the database
//! (`published_snapshot`) and every instance serves that copy, so all
//! serve the same bytes and ETag. With a signing key
//! (`--snapshot-signing-key`) each publish is signed (Ed25519, over the
//! exact bytes: `shared::snapshot::signature`); a new key re-signs the
//! current bytes.
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

use crate::control::db::servers::MIN_DNS_SCORE;
use crate::control::db::{Db, DbError, hex, leases, snapshots};
use crate::control::zone_rules::{
    self, AdvertisedZone, DocumentSettings, EligibleServer, OriginSettings, ScoreRamp,
};
use crate::control::zone_tree;
use crate::shared::repeated_failure::RepeatedFailure;
use crate::shared::snapshot::signature::{self, SigningKey};
use crate::shared::snapshot::{self, SnapshotError};
use crate::shared::zones;

/// What the builder publishes for, and where.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    pub origins: Vec<OriginSettings>,
    /// The snapshot file to replace on every publish (and `FILE.sig` beside
    /// it when signing); `None`: memory only.
    pub out: Option<PathBuf>,
    /// Signs every publish when set.
    pub signing_key: Option<Arc<SigningKey>>,
    /// This instance's name in the zone builder's lease.
    pub instance: String,
    /// Weights ramped up with the score instead of the switch at 10.
    pub score_ramp: Option<ScoreRamp>,
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
            signing_key: None,
            instance: instance_name(),
            score_ramp: None,
        }
    }
}

/// A name for this instance, unique among those sharing the database:
/// host, process and a random part.
pub fn instance_name() -> String {
    let host = crate::shared::process::host_name().unwrap_or_default();
    let mut random = [0u8; 4];
    rand::fill(&mut random[..]);
    format!("{host}:{}:{}", std::process::id(), hex(&random))
}

/// A published snapshot as the endpoint serves it.
#[derive(Debug)]
pub struct PublishedSnapshot {
    pub serial: u32,
    pub bytes: Bytes,
    /// The signature line of `bytes` (`X-Timepool-Signature`, `FILE.sig`).
    pub signature: Option<String>,
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
    /// Whether this instance holds the zone builder's lease.
    pub leading: std::sync::atomic::AtomicBool,
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
    /// This instance lost (or never had) the zone builder's lease; another
    /// publishes.
    NotLeader,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Db(error) => write!(f, "zone builder: database: {error}"),
            BuildError::Invalid(error) => write!(f, "zone builder: snapshot rejected: {error}"),
            BuildError::Io(error) => write!(f, "zone builder: {error}"),
            BuildError::NotLeader => write!(
                f,
                "zone builder: another instance holds the lease and publishes"
            ),
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

/// The servers eligible for DNS at `now` (unix seconds), with their zones
/// and weights: the netspeed, or with a score ramp the netspeed scaled by
/// the score (zone_rules::ScoreRamp).
pub async fn eligible_servers(
    db: &Db,
    now: i64,
    ramp: Option<ScoreRamp>,
) -> Result<Vec<EligibleServer>, DbError> {
    let min_score = ramp.map_or(MIN_DNS_SCORE, |ramp| ramp.low);
    let rows = snapshots::eligible_servers(db, now, min_score).await?;
    let mut servers = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(address) = row.address.parse::<IpAddr>() else {
            tracing::warn!(id = row.id, address = %row.address, "server address does not parse; left out of DNS");
            continue;
        };
        let netspeed = u32::try_from(row.netspeed).unwrap_or(u32::MAX);
        let weight = match ramp {
            Some(ramp) => ramp.weight(netspeed, row.score),
            None => netspeed,
        };
        if weight == 0 {
            continue;
        }
        let (country, continent) = country_and_continent(row.zone.as_deref());
        servers.push(EligibleServer {
            id: row.id as u64,
            address,
            weight,
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

pub async fn read_inputs(db: &Db, now: i64, ramp: Option<ScoreRamp>) -> Result<Inputs, DbError> {
    Ok(Inputs {
        servers: eligible_servers(db, now, ramp).await?,
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

/// Serialize, sign, validate and pack a document for serving.
fn finish(
    config: &BuildConfig,
    document: &serde_json::Value,
    published_at: i64,
) -> Result<PublishedSnapshot, BuildError> {
    let bytes = serde_json::to_vec_pretty(document)
        .map_err(|e| BuildError::Io(std::io::Error::other(e)))?;
    let signature = config.signing_key.as_ref().map(|key| key.sign(&bytes));
    pack(bytes, published_at, signature)
}

/// Validate and pack snapshot bytes (new, or as stored) for serving.
fn pack(
    bytes: Vec<u8>,
    published_at: i64,
    signature: Option<String>,
) -> Result<PublishedSnapshot, BuildError> {
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
        signature,
        gzip: Bytes::from(gzip),
        published_at,
    })
}

/// The stored form of a packed snapshot.
fn stored(snapshot: &PublishedSnapshot) -> snapshots::StoredSnapshot {
    snapshots::StoredSnapshot {
        serial: snapshot.serial,
        published_at: snapshot.published_at,
        body: String::from_utf8_lossy(&snapshot.bytes).into_owned(),
        signature: snapshot.signature.clone(),
    }
}

/// Replace the output file (and its `.sig`, written first) unless they
/// already hold these bytes.
fn write_out(config: &BuildConfig, snapshot: &PublishedSnapshot) -> Result<(), BuildError> {
    let Some(path) = &config.out else {
        return Ok(());
    };
    signature::write_signed(path, &snapshot.bytes, snapshot.signature.as_deref())
        .map_err(BuildError::Io)
}

/// Build from the database and publish if the content changed. The
/// snapshot is validated before anything is written; the file is replaced
/// inside the transaction that records the serial, so a failed write
/// records nothing and a failed record leaves a file whose serial the next
/// publish still exceeds. (One build, no lease: `build-zones` takes the
/// lease around it, the background builder uses [`publish_as_leader`].)
pub async fn build_and_publish(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    now: i64,
) -> Result<BuildOutcome, BuildError> {
    let inputs = read_inputs(db, now, config.score_ramp).await?;
    publish_inputs(db, config, store, &inputs, now, None).await
}

/// The lease a publish must still hold when it commits.
#[derive(Clone, Debug)]
pub struct Fence {
    pub holder: String,
    pub ttl_secs: i64,
}

/// `build_and_publish` with inputs already read, committed only while
/// `fence` (when given) still holds the zone builder's lease.
pub async fn publish_as_leader(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    inputs: &Inputs,
    now: i64,
    fence: &Fence,
) -> Result<BuildOutcome, BuildError> {
    publish_inputs(db, config, store, inputs, now, Some(fence)).await
}

/// In a publish's transaction: the lease still holds (and is renewed),
/// else nothing is written.
async fn check_fence(
    tx: &mut crate::control::db::Tx,
    db: &Db,
    fence: Option<&Fence>,
) -> Result<(), BuildError> {
    let Some(fence) = fence else { return Ok(()) };
    let held = leases::still_held(
        tx,
        db.engine,
        leases::ZONE_BUILDER,
        &fence.holder,
        fence.ttl_secs,
    )
    .await?;
    if held {
        Ok(())
    } else {
        Err(BuildError::NotLeader)
    }
}

async fn publish_inputs(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    inputs: &Inputs,
    now: i64,
    fence: Option<&Fence>,
) -> Result<BuildOutcome, BuildError> {
    let draft = document(inputs, &config.origins, 1, "");
    let hash = content_hash(&draft);
    let last = snapshots::last_publish(db).await?;
    if let Some(last) = &last
        && last.content_hash == hash
    {
        keep_current(db, config, store, inputs, last, fence).await?;
        return Ok(BuildOutcome::Unchanged(last.serial));
    }
    let now_serial = u32::try_from(now.max(1)).unwrap_or(u32::MAX);
    let serial = match &last {
        Some(last) => last.serial.saturating_add(1).max(now_serial),
        None => now_serial,
    };
    let document = document(inputs, &config.origins, serial, &generated_text(now));
    let snapshot = finish(config, &document, now)?;
    let mut tx = db.begin().await?;
    check_fence(&mut tx, db, fence).await?;
    snapshots::record_publish(&mut tx, serial, now, &hash).await?;
    snapshots::store_published(&mut tx, &stored(&snapshot)).await?;
    write_out(config, &snapshot)?;
    tx.commit().await?;
    tracing::info!(
        serial,
        servers = inputs.servers.len(),
        vendor_zones = inputs.vendors.len(),
        file = ?config.out,
        signed_by = ?config.signing_key.as_ref().map(|key| key.id().to_string()),
        "zone snapshot published"
    );
    store.set(snapshot);
    store.published.fetch_add(1, Ordering::Relaxed);
    Ok(BuildOutcome::Published(serial))
}

/// Same content as the last publish: serve the stored bytes (a restart,
/// another instance's publish), store them if an older version of the
/// schema did not, re-sign them when the signing key changed, and write
/// the file if it is missing.
async fn keep_current(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
    inputs: &Inputs,
    last: &snapshots::LastPublish,
    fence: Option<&Fence>,
) -> Result<(), BuildError> {
    let held = store.current().filter(|c| c.serial == last.serial);
    let mut changed = held.is_none();
    let mut current = match held {
        Some(current) => current,
        None => match snapshots::published(db).await? {
            Some(row) if row.serial == last.serial => Arc::new(pack(
                row.body.into_bytes(),
                row.published_at,
                row.signature,
            )?),
            _ => {
                // Published before the bytes were stored: render it as it
                // was (same serial, same `generated`) and store that.
                let document = document(
                    inputs,
                    &config.origins,
                    last.serial,
                    &generated_text(last.published_at),
                );
                let snapshot = finish(config, &document, last.published_at)?;
                let mut tx = db.begin().await?;
                check_fence(&mut tx, db, fence).await?;
                snapshots::store_published(&mut tx, &stored(&snapshot)).await?;
                tx.commit().await?;
                Arc::new(snapshot)
            }
        },
    };
    if let Some(key) = &config.signing_key {
        let signed_by_key = current.signature.as_deref().is_some_and(|line| {
            line.split_ascii_whitespace().nth(1) == Some(key.id().to_string().as_str())
        });
        if !signed_by_key {
            let line = key.sign(&current.bytes);
            // Only while holding the lease: during a key rotation an
            // instance that lost it must not overwrite the leader's line.
            let mut tx = db.begin().await?;
            check_fence(&mut tx, db, fence).await?;
            let signed = snapshots::set_signature(&mut tx, current.serial, &line).await?;
            tx.commit().await?;
            if signed {
                tracing::info!(serial = current.serial, key = %key.id(), "snapshot signed with the new key");
            }
            current = Arc::new(pack(
                current.bytes.to_vec(),
                current.published_at,
                Some(line),
            )?);
            changed = true;
        }
    }
    let file_missing = config.out.as_ref().is_some_and(|path| {
        !path.exists() || (current.signature.is_some() && !signature::signature_path(path).exists())
    });
    if changed || file_missing {
        write_out(config, &current)?;
    }
    if changed {
        store.current.store(Some(current));
    }
    Ok(())
}

/// An instance that does not build: serve what the database holds (the
/// leader's last publish) once it differs from the copy in memory; true
/// when the copy changed.
pub async fn follow_published(
    db: &Db,
    config: &BuildConfig,
    store: &SnapshotStore,
) -> Result<bool, BuildError> {
    let Some((serial, signature)) = snapshots::published_head(db).await? else {
        return Ok(false);
    };
    if store
        .current()
        .is_some_and(|held| held.serial == serial && held.signature == signature)
    {
        return Ok(false);
    }
    let Some(row) = snapshots::published(db).await? else {
        return Ok(false);
    };
    let snapshot = pack(row.body.into_bytes(), row.published_at, row.signature)?;
    write_out(config, &snapshot)?;
    tracing::info!(
        serial = snapshot.serial,
        "serving the snapshot the leader published"
    );
    store.set(snapshot);
    Ok(true)
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
    /// How long the zone builder's lease lasts without a renewal (it is
    /// renewed every check): the longest a dead leader blocks the others.
    pub lease: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            check: Duration::from_secs(2),
            debounce: Duration::from_secs(1),
            rebuild: Duration::from_secs(60),
            lease: Duration::from_secs(15),
        }
    }
}

/// The background builder of `timepool web`. Every check it takes or
/// renews the zone builder's lease. The holder builds at start (of its
/// lead), when the eligible servers or vendor zones change (debounced),
/// and at least every `schedule.rebuild`; the others serve what the
/// holder stored. Errors are logged; the last good snapshot stays.
pub async fn run(db: Db, config: BuildConfig, store: Arc<SnapshotStore>, schedule: Schedule) {
    let fence = Fence {
        holder: config.instance.clone(),
        ttl_secs: i64::try_from(schedule.lease.as_secs().max(1)).unwrap_or(i64::MAX),
    };
    let mut built_from: Option<[u8; 32]> = None;
    let mut last_build: Option<tokio::time::Instant> = None;
    // A full disk or a database that stays down fails every build: one
    // line per cause, and one when publishing works again.
    let failures = RepeatedFailure::default();
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(schedule.check).await;
        }
        first = false;
        let leading =
            match leases::acquire(&db, leases::ZONE_BUILDER, &fence.holder, fence.ttl_secs).await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, "zone builder: cannot take or renew the lease");
                    false
                }
            };
        if store.leading.swap(leading, Ordering::Relaxed) != leading {
            if leading {
                tracing::info!(instance = %fence.holder, "this instance now builds and publishes the zones");
            } else {
                tracing::warn!(instance = %fence.holder, "no longer holding the zone builder's lease; serving what its holder publishes");
            }
            // A new lead builds at once.
            built_from = None;
            last_build = None;
        }
        if !leading {
            if let Err(error) = follow_published(&db, &config, &store).await {
                tracing::warn!(%error, "cannot read the published snapshot; the previous one stays");
            }
            continue;
        }
        let due = last_build.is_none_or(|at| at.elapsed() >= schedule.rebuild);
        let mut inputs = match read_inputs(&db, crate::control::db::now(), config.score_ramp).await
        {
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
            match read_inputs(&db, crate::control::db::now(), config.score_ramp).await {
                Ok(fresh) => inputs = fresh,
                Err(error) => {
                    tracing::warn!(%error, "zone builder: cannot read the servers");
                    continue;
                }
            }
        }
        last_build = Some(tokio::time::Instant::now());
        match publish_as_leader(
            &db,
            &config,
            &store,
            &inputs,
            crate::control::db::now(),
            &fence,
        )
        .await
        {
            Ok(_) => {
                built_from = Some(inputs.digest());
                if failures.succeeded() {
                    tracing::info!("zone snapshots are published again");
                }
            }
            Err(BuildError::NotLeader) => {
                store.leading.store(false, Ordering::Relaxed);
                tracing::warn!(instance = %fence.holder, "lost the zone builder's lease before publishing; another instance publishes");
            }
            Err(error) => {
                store.failures.fetch_add(1, Ordering::Relaxed);
                if failures.failed(&error.to_string()) {
                    tracing::error!(%error, "zone snapshot not published; the previous one stays (said again only when the cause changes)");
                } else {
                    tracing::debug!(%error, "zone snapshot still not published");
                }
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
    /// Sign the snapshot with this Ed25519 private key (PEM, from
    /// `timepool admin gen-snapshot-key`); the signature goes to OUT.sig.
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_SIGNING_KEY")]
    pub snapshot_signing_key: Option<PathBuf>,
    /// LOW:HIGH: a server's weight grows from 0 at score LOW to its full
    /// netspeed at score HIGH (e.g. 10:15), instead of all or nothing at 10.
    #[arg(long, env = "TIMEPOOL_SCORE_RAMP")]
    pub score_ramp: Option<ScoreRamp>,
}

/// Reads the signing key of `--snapshot-signing-key`.
pub fn read_signing_key(path: Option<&std::path::Path>) -> Result<Option<Arc<SigningKey>>, String> {
    path.map(|path| {
        SigningKey::read_file(path)
            .map(|key| {
                tracing::info!(key = %key.id(), "snapshots are signed");
                Arc::new(key)
            })
            .map_err(|e| format!("--snapshot-signing-key {e}"))
    })
    .transpose()
}

/// How long `build-zones` holds the lease: its one build.
const BUILD_ZONES_LEASE_SECS: i64 = 300;

pub async fn build_zones_command(
    args: BuildZonesArgs,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let signing_key = read_signing_key(args.snapshot_signing_key.as_deref())?;
    let db = Db::connect(&args.database).await?;
    let origin = args.origin.trim_end_matches('.').to_ascii_lowercase();
    let config = BuildConfig {
        signing_key,
        score_ramp: args.score_ramp,
        ..BuildConfig::for_origin(&origin, args.nameservers, Some(args.out.clone()))
    };
    let store = SnapshotStore::default();
    // A running `timepool web` may be building: one publisher at a time.
    let fence = Fence {
        holder: config.instance.clone(),
        ttl_secs: BUILD_ZONES_LEASE_SECS,
    };
    if !leases::acquire(&db, leases::ZONE_BUILDER, &fence.holder, fence.ttl_secs).await? {
        let holder = leases::holder(&db, leases::ZONE_BUILDER).await?;
        db.pool.close().await;
        let (holder, remaining) = holder.unwrap_or_default();
        return Err(format!(
            "another instance ({holder}) builds the zones (its lease runs {remaining} s more); nothing published"
        )
        .into());
    }
    let now = crate::control::db::now();
    let outcome = match read_inputs(&db, now, config.score_ramp).await {
        Ok(inputs) => publish_as_leader(&db, &config, &store, &inputs, now, &fence).await,
        Err(error) => Err(BuildError::Db(error)),
    };
    if let Err(error) = leases::release(&db, leases::ZONE_BUILDER, &fence.holder).await {
        tracing::warn!(%error, "cannot release the zone builder's lease; it expires by itself");
    }
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
