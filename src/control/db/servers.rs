//! NTP servers registered by operators, and the zones they are in.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Tx, now};
use crate::control::zone_tree;

/// Servers at or above this score are handed to clients (zones/README.md,
/// "Zone building").
pub const MIN_DNS_SCORE: f64 = 10.0;
/// A server due for deletion within this window is no longer handed out.
pub const DELETION_DNS_WINDOW_SECS: i64 = 14 * 86_400;
/// The earliest a deletion may be scheduled, from now.
pub const MIN_DELETION_DELAY_SECS: i64 = 3 * 86_400;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Server {
    pub id: i64,
    pub account_id: i64,
    pub address: String,
    pub ip_version: i64,
    pub hostname: Option<String>,
    pub geo_zone: Option<String>,
    pub zone_override: Option<String>,
    pub netspeed: i64,
    pub in_pool: i64,
    pub score: f64,
    pub score_ts: Option<i64>,
    pub created_at: i64,
    pub deletion_on: Option<i64>,
    /// When the server was shown to be its account's (`server_verification`);
    /// None: not yet, and its netspeed is capped.
    pub verified_at: Option<i64>,
    /// Effective zones, most specific first (filled from server_zones).
    pub zones: Vec<String>,
    /// Derived from the columns above; see `status`.
    pub status: &'static str,
}

const COLUMNS: &str = "id, account_id, address, ip_version, hostname, geo_zone, zone_override,
    netspeed, in_pool, score, score_ts, created_at, deletion_on, verified_at";

impl Server {
    fn from_row(row: &AnyRow, now: i64) -> Result<Server, DbError> {
        let mut server = Server {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            address: row.try_get("address")?,
            ip_version: row.try_get("ip_version")?,
            hostname: row.try_get("hostname")?,
            geo_zone: row.try_get("geo_zone")?,
            zone_override: row.try_get("zone_override")?,
            netspeed: row.try_get("netspeed")?,
            in_pool: row.try_get("in_pool")?,
            score: row.try_get("score")?,
            score_ts: row.try_get("score_ts")?,
            created_at: row.try_get("created_at")?,
            deletion_on: row.try_get("deletion_on")?,
            verified_at: row.try_get("verified_at")?,
            zones: Vec::new(),
            status: "",
        };
        server.status = server.status_at(now);
        Ok(server)
    }

    /// A status word for lists. Derived rather than stored so it cannot drift
    /// from the score, netspeed and deletion columns it summarises.
    pub fn status_at(&self, now: i64) -> &'static str {
        match self.deletion_on {
            Some(t) if t <= now => return "deleted",
            Some(_) => return "deletion scheduled",
            None => {}
        }
        if self.in_pool == 0 {
            "out of pool"
        } else if self.netspeed == 0 {
            "monitor only"
        } else if self.score_ts.is_none() {
            "new"
        } else if self.score >= MIN_DNS_SCORE {
            "active"
        } else {
            "low score"
        }
    }

    /// The country zone in effect: the operator's choice, else GeoIP's.
    pub fn country_zone(&self) -> Option<&str> {
        self.zone_override.as_deref().or(self.geo_zone.as_deref())
    }
}

pub struct NewServer<'a> {
    pub account_id: i64,
    pub address: &'a str,
    pub ip_version: i64,
    pub hostname: Option<&'a str>,
    pub geo_zone: Option<&'a str>,
    pub zone_override: Option<&'a str>,
    pub netspeed: i64,
}

/// The zones a server with this country zone belongs to: the country and its
/// parents; without a country only the global zone.
pub fn zones_for(country: Option<&str>) -> Vec<&'static str> {
    match country.map(zone_tree::with_parents) {
        Some(zones) if !zones.is_empty() => zones,
        _ => vec!["@"],
    }
}

pub async fn address_exists(tx: &mut Tx, address: &str) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT id FROM servers WHERE address = $1")
        .bind(address)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// The server registered at `address` and its account: (id, account_id).
pub async fn registration_of(tx: &mut Tx, address: &str) -> Result<Option<(i64, i64)>, DbError> {
    let row = sqlx::query("SELECT id, account_id FROM servers WHERE address = $1")
        .bind(address)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("account_id")?)))
        .transpose()
}

pub async fn insert(tx: &mut Tx, new: &NewServer<'_>) -> Result<i64, DbError> {
    let id: i64 = sqlx::query(
        "INSERT INTO servers (account_id, address, ip_version, hostname, geo_zone, zone_override,
                              netspeed, in_pool, score, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 0, $8) RETURNING id",
    )
    .bind(new.account_id)
    .bind(new.address)
    .bind(new.ip_version)
    .bind(new.hostname)
    .bind(new.geo_zone)
    .bind(new.zone_override)
    .bind(new.netspeed)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    let country = new.zone_override.or(new.geo_zone);
    set_zones(tx, id, &zones_for(country)).await?;
    Ok(id)
}

async fn set_zones(tx: &mut Tx, server_id: i64, zones: &[&str]) -> Result<(), DbError> {
    sqlx::query("DELETE FROM server_zones WHERE server_id = $1")
        .bind(server_id)
        .execute(&mut **tx)
        .await?;
    for zone in zones {
        sqlx::query("INSERT INTO server_zones (server_id, zone) VALUES ($1, $2)")
            .bind(server_id)
            .bind(*zone)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn attach_zones(db: &Db, servers: &mut [Server]) -> Result<(), DbError> {
    if servers.is_empty() {
        return Ok(());
    }
    // One query for the lot; the ids are integers we produced, not input.
    let ids: Vec<String> = servers.iter().map(|s| s.id.to_string()).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT server_id, zone FROM server_zones WHERE server_id IN ({})",
        ids.join(",")
    )))
    .fetch_all(&db.pool)
    .await?;
    let mut by_server: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        by_server
            .entry(row.try_get("server_id")?)
            .or_default()
            .push(row.try_get("zone")?);
    }
    for server in servers.iter_mut() {
        let mut zones = by_server.remove(&server.id).unwrap_or_default();
        // Most specific first: countries, then continents, then "@".
        zones.sort_by_key(|z| std::cmp::Reverse(zone_tree::with_parents(z).len()));
        server.zones = zones;
    }
    Ok(())
}

/// The account's servers, deleted ones excluded, sorted by address.
pub async fn list_for_account(db: &Db, account_id: i64) -> Result<Vec<Server>, DbError> {
    let ts = now();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers
         WHERE account_id = $1 AND (deletion_on IS NULL OR deletion_on > $2)
         ORDER BY ip_version, address"
    )))
    .bind(account_id)
    .bind(ts)
    .fetch_all(&db.pool)
    .await?;
    let mut servers = rows
        .iter()
        .map(|r| Server::from_row(r, ts))
        .collect::<Result<Vec<_>, _>>()?;
    // By address as a number (127.0.0.2 before 127.0.0.10), IPv4 first:
    // text order in SQL would not do it on either engine.
    servers.sort_by_key(|s| s.address.parse::<std::net::IpAddr>().ok());
    attach_zones(db, &mut servers).await?;
    Ok(servers)
}

/// One server, only if it belongs to `account_id` (else None: the caller
/// answers 404 so other accounts' servers are not even confirmed to exist).
pub async fn get_for_account(db: &Db, account_id: i64, id: i64) -> Result<Option<Server>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers WHERE id = $1 AND account_id = $2"
    )))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&db.pool)
    .await?;
    one_with_zones(db, row).await
}

pub async fn get_by_address(db: &Db, address: &str) -> Result<Option<Server>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM servers WHERE address = $1"
    )))
    .bind(address)
    .fetch_optional(&db.pool)
    .await?;
    one_with_zones(db, row).await
}

async fn one_with_zones(db: &Db, row: Option<AnyRow>) -> Result<Option<Server>, DbError> {
    let Some(row) = row else { return Ok(None) };
    let mut servers = vec![Server::from_row(&row, now())?];
    attach_zones(db, &mut servers).await?;
    Ok(servers.pop())
}

/// Changes netspeed and zone override of the account's server.
pub async fn update_settings(
    tx: &mut Tx,
    account_id: i64,
    id: i64,
    netspeed: i64,
    zone_override: Option<&str>,
) -> Result<bool, DbError> {
    let row = sqlx::query(
        "UPDATE servers SET netspeed = $1, zone_override = $2
         WHERE id = $3 AND account_id = $4 RETURNING geo_zone",
    )
    .bind(netspeed)
    .bind(zone_override)
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let geo_zone: Option<String> = row.try_get("geo_zone")?;
    let country = zone_override.or(geo_zone.as_deref());
    set_zones(tx, id, &zones_for(country)).await?;
    Ok(true)
}

/// Sets (Some) or cancels (None) the scheduled deletion of the account's server.
pub async fn set_deletion(
    tx: &mut Tx,
    account_id: i64,
    id: i64,
    deletion_on: Option<i64>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE servers SET deletion_on = $1
         WHERE id = $2 AND account_id = $3 AND (deletion_on IS NULL OR deletion_on > $4)",
    )
    .bind(deletion_on)
    .bind(id)
    .bind(account_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Server counts for one zone: eligible for DNS (zones/README.md, "Zone
/// building") and registered.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ZoneCount {
    pub v4: i64,
    pub v6: i64,
    pub registered_v4: i64,
    pub registered_v6: i64,
}

/// Counts per zone in one pass; zones without servers are absent.
pub async fn zone_counts(db: &Db) -> Result<HashMap<String, ZoneCount>, DbError> {
    let ts = now();
    let rows = sqlx::query(
        "SELECT z.zone, s.ip_version,
                SUM(CASE WHEN s.in_pool = 1 AND s.score >= $1 AND s.netspeed > 0
                          AND (s.deletion_on IS NULL OR s.deletion_on > $2)
                         THEN 1 ELSE 0 END) AS eligible,
                COUNT(*) AS registered
         FROM server_zones z JOIN servers s ON s.id = z.server_id
         WHERE s.deletion_on IS NULL OR s.deletion_on > $3
         GROUP BY z.zone, s.ip_version",
    )
    .bind(MIN_DNS_SCORE)
    .bind(ts + DELETION_DNS_WINDOW_SECS)
    .bind(ts)
    .fetch_all(&db.pool)
    .await?;
    let mut counts: HashMap<String, ZoneCount> = HashMap::new();
    for row in rows {
        let zone: String = row.try_get("zone")?;
        let version: i64 = row.try_get("ip_version")?;
        let eligible: i64 = row.try_get("eligible")?;
        let registered: i64 = row.try_get("registered")?;
        let entry = counts.entry(zone).or_default();
        if version == 6 {
            entry.v6 = eligible;
            entry.registered_v6 = registered;
        } else {
            entry.v4 = eligible;
            entry.registered_v4 = registered;
        }
    }
    Ok(counts)
}
