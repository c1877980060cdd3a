//! The demo's data directory and database: made on the first run (logins,
//! monitors, the simulated servers registered as operators would), read
//! back on the next. The logins and monitor tokens are kept in a state
//! file readable by its owner only (the database stores them hashed).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fixtures::{LOGINS, MONITORS, SimulatedServer};
use crate::control::db::servers::NewServer;
use crate::control::db::{Db, audit, monitors, servers};
use crate::control::web::BoxError;

/// The file in the data directory that marks it as the demo's and keeps
/// the logins and monitor tokens (stored only hashed in the database).
pub const STATE_FILE: &str = "demo-state.json";
const STATE_VERSION: u32 = 1;

/// A login the demo created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub role: String,
    pub email: String,
    pub password: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MonitorLogin {
    pub name: String,
    pub token: String,
}

/// What the demo keeps between runs besides the database.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoState {
    pub version: u32,
    pub logins: Vec<Login>,
    pub monitors: Vec<MonitorLogin>,
}

/// Create the data directory, or empty it first with `reset`. Returns
/// whether the demo data is new. A directory that is not the demo's (no
/// state file, not empty) is never deleted.
pub fn prepare_data_dir(dir: &Path, reset: bool) -> Result<bool, BoxError> {
    let state_file = dir.join(STATE_FILE);
    if dir.exists() {
        let is_empty = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_none();
        let is_demo = state_file.exists();
        if !is_demo && !is_empty {
            return Err(format!(
                "{} exists and is not the demo's data directory (no {STATE_FILE}); \
                 choose another with --data-dir",
                dir.display()
            )
            .into());
        }
        if reset && is_demo {
            std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        } else if is_demo {
            return Ok(false);
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(true)
}

/// The snapshot signing key pair in the data directory (made on the first
/// run, like `timepool admin gen-snapshot-key`): the private key's path
/// for the web app, the public key for the DNS daemon.
pub fn snapshot_keys(
    dir: &Path,
) -> Result<
    (
        std::path::PathBuf,
        crate::shared::snapshot::signature::PublicKey,
    ),
    BoxError,
> {
    use crate::shared::snapshot::signature::{PublicKey, write_key_pair};
    let private = dir.join("snapshot-signing.key");
    let public = dir.join("snapshot-signing.pub");
    if private.exists() && public.exists() {
        return Ok((private.clone(), PublicKey::read_file(&public)?));
    }
    let _ = std::fs::remove_file(&private);
    let _ = std::fs::remove_file(&public);
    Ok((private.clone(), write_key_pair(&private, &public)?))
}

/// The database, logins, servers and monitors: created on a new data
/// directory, read back on a reused one.
pub async fn seed(
    dir: &Path,
    database_url: &str,
    servers: &[SimulatedServer],
) -> Result<DemoState, BoxError> {
    let db = Db::connect(database_url).await?;
    let state_file = dir.join(STATE_FILE);
    let state = if state_file.exists() {
        let text = std::fs::read_to_string(&state_file)
            .map_err(|e| format!("{}: {e}", state_file.display()))?;
        let state: DemoState = serde_json::from_str(&text)
            .map_err(|e| format!("{}: {e} (start over with --reset)", state_file.display()))?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "{} is from another version of the demo; start over with --reset",
                state_file.display()
            )
            .into());
        }
        state
    } else {
        let state = create_logins_and_monitors(&db).await?;
        let text = serde_json::to_vec_pretty(&state)?;
        crate::shared::atomic_file::write(&state_file, &text)
            .map_err(|e| format!("{}: {e}", state_file.display()))?;
        restrict_to_owner(&state_file);
        state
    };
    add_missing_servers(&db, &state, servers).await?;
    db.pool.close().await;
    Ok(state)
}

fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(file = %path.display(), %error, "cannot make the file private");
    }
}

async fn create_logins_and_monitors(db: &Db) -> Result<DemoState, BoxError> {
    let actor = audit::Actor {
        user_id: None,
        name: "demo".to_string(),
    };
    let mut logins = Vec::new();
    let mut monitors_out = Vec::new();
    let mut tx = db.begin().await?;
    for (role, email) in LOGINS {
        let password = crate::control::web::admin::generate_password(16);
        let hash = crate::control::web::session::hash_password(&password)
            .map_err(|e| format!("hashing a password: {e:?}"))?;
        let user =
            crate::control::db::accounts::create_account_with_user(&mut tx, email, &hash, role)
                .await
                .map_err(|e| format!("creating {email}: {e} (start over with --reset)"))?;
        // The demo's logins are made here, not by sign-up: confirmed.
        crate::control::db::accounts::mark_verified(&mut tx, user.id).await?;
        audit::record(
            &mut tx,
            &actor,
            "user.create",
            &format!("user:{}", user.id),
            &format!("{email} role={role}"),
        )
        .await?;
        logins.push(Login {
            role: role.to_string(),
            email: email.to_string(),
            password,
        });
    }
    for name in MONITORS {
        let (id, token) = monitors::create(&mut tx, name).await?;
        // The demo's monitors run on the same host as the simulated servers,
        // all on loopback: registering 127.0.0.1 as their address would put
        // every server in their own /24, which they are never given. Staff
        // make them active at once instead of waiting for the 41 healthy
        // batches that promote a new monitor.
        monitors::set_state(&mut tx, id, "active").await?;
        audit::record(
            &mut tx,
            &actor,
            "monitor.create",
            &format!("monitor:{id} {name}"),
            "state=active",
        )
        .await?;
        monitors_out.push(MonitorLogin {
            name: name.to_string(),
            token,
        });
    }
    tx.commit().await?;
    Ok(DemoState {
        version: STATE_VERSION,
        logins,
        monitors: monitors_out,
    })
}

/// Register the simulated servers not in the database yet, each in its
/// operator's account, as an operator would with the zone chosen by hand.
async fn add_missing_servers(
    db: &Db,
    state: &DemoState,
    servers: &[SimulatedServer],
) -> Result<(), BoxError> {
    let mut accounts = Vec::new();
    for login in state.logins.iter().filter(|l| l.role == "operator") {
        let (user, _) = crate::control::db::accounts::find_login(db, &login.email)
            .await?
            .ok_or_else(|| {
                format!(
                    "the demo database has no user {} (start over with --reset)",
                    login.email
                )
            })?;
        accounts.push(user);
    }
    let mut tx = db.begin().await?;
    for server in servers {
        let address = server.address.to_string();
        if servers::address_exists(&mut tx, &address).await? {
            continue;
        }
        let owner = accounts
            .get(server.operator)
            .ok_or("the demo has fewer operators than its servers name")?;
        let id = servers::insert(
            &mut tx,
            &NewServer {
                account_id: owner.account_id,
                address: &address,
                ip_version: if server.address.is_ipv6() { 6 } else { 4 },
                hostname: None,
                geo_zone: None,
                zone_override: Some(server.zone),
                netspeed: server.netspeed,
            },
        )
        .await?;
        // The demo's own servers count as verified (as staff would
        // approve them); one an operator adds in the demo is not.
        crate::control::db::server_verification::mark_verified(
            &mut tx,
            id,
            crate::control::db::now(),
        )
        .await?;
        audit::record(
            &mut tx,
            &audit::Actor {
                user_id: Some(owner.id),
                name: owner.email.clone(),
            },
            "server.add",
            &format!("server:{id} {address}"),
            &format!("zone={} netspeed={}", server.zone, server.netspeed),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
