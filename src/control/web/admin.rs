//! `timepool admin ...`: staff tasks from the command line, no browser needed.

use std::io::BufRead;
use std::path::PathBuf;

use super::BoxError;
use super::form::{MIN_PASSWORD_LEN, check_email};
use super::session::hash_password;
use super::staff::check_monitor_name;
use crate::control::db::audit::{self, Actor};
use crate::control::db::{self, Db, accounts, is_unique_violation, monitors, nodes};

/// Where the database is; same flags and environment as `timepool web`.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or postgres://... [default: SQLite in the data dir].
    #[arg(long, env = "TIMEPOOL_DATABASE")]
    pub database: Option<String>,
    /// Directory for the SQLite database [default: ./data].
    #[arg(long, env = "TIMEPOOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DbArgs {
    pub fn url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            db::default_sqlite_url(
                self.data_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new("data")),
            )
        })
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Create a login (with its own account). Prints a generated password
    /// once, unless --password-stdin gives one.
    CreateUser {
        /// Give the user the staff role.
        #[arg(long)]
        staff: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a monitor (state candidate) and print its API token once.
    CreateMonitor {
        name: String,
        /// The address the monitor checks from: it is never given servers
        /// in the same /24 (IPv6 /48).
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a new Ed25519 key pair for signing snapshots: the private key
    /// (PKCS#8 PEM, readable by its owner only) for `web` and `build-zones`
    /// (--snapshot-signing-key), the public key (PEM) for the DNS nodes
    /// (--snapshot-public-key). Refuses to overwrite a file.
    GenSnapshotKey {
        private_file: PathBuf,
        public_file: PathBuf,
    },
    /// Register a DNS node for the nodes page and print its token once
    /// (for `timepool dns --node-token-file`).
    CreateNode {
        /// The node's name, as it sends it (1 to 64 letters, digits, '.',
        /// '-', '_').
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A random password for a new login: `length` characters from an
/// unambiguous set (no 0/O, 1/l/I).
pub fn generate_password(length: usize) -> String {
    const SET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = vec![0u8; length];
    rand::fill(&mut bytes[..]);
    bytes
        .iter()
        .map(|b| SET[usize::from(*b) % SET.len()] as char)
        .collect()
}

/// Writes a key pair; never over an existing file.
fn gen_snapshot_key(
    private_file: &std::path::Path,
    public_file: &std::path::Path,
) -> Result<(), BoxError> {
    let key = crate::shared::snapshot::signature::write_key_pair(private_file, public_file)?;
    println!("private key: {} (owner only)", private_file.display());
    println!(
        "public key:  {} (key id {})",
        public_file.display(),
        key.id()
    );
    Ok(())
}

pub async fn run_admin(cmd: AdminCommand) -> Result<(), BoxError> {
    match cmd {
        AdminCommand::GenSnapshotKey {
            private_file,
            public_file,
        } => gen_snapshot_key(&private_file, &public_file),
        AdminCommand::CreateNode { name, db } => {
            if !super::form::is_short_name(&name) {
                return Err(format!("a node name: {}", super::form::SHORT_NAME_RULE).into());
            }
            let db = Db::connect(&db.url()).await?;
            let mut tx = db.begin().await?;
            let token = nodes::create(&mut tx, &name).await?;
            audit::record(
                &mut tx,
                &Actor::cli(),
                "node.create",
                &format!("node:{name}"),
                "",
            )
            .await?;
            tx.commit().await?;
            println!("registered DNS node {name}");
            println!("token: {token}");
            println!("(shown once; it is stored only as a SHA-256 hash)");
            Ok(())
        }
        AdminCommand::CreateUser {
            staff,
            password_stdin,
            email,
            db,
        } => {
            let email = check_email(&email)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                let password = line.trim_end_matches(['\r', '\n']).to_string();
                if password.chars().count() < MIN_PASSWORD_LEN {
                    return Err(format!(
                        "the password needs at least {MIN_PASSWORD_LEN} characters"
                    )
                    .into());
                }
                (password, false)
            } else {
                (generate_password(20), true)
            };
            let hash = hash_password(&password).map_err(|e| format!("{e:?}"))?;
            let db = Db::connect(&db.url()).await?;
            let role = if staff { "staff" } else { "operator" };
            let mut tx = db.begin().await?;
            let user = match accounts::create_account_with_user(&mut tx, &email, &hash, role).await
            {
                Ok(user) => user,
                Err(e) if is_unique_violation(&e) => {
                    return Err(format!("{email} already has a login").into());
                }
                Err(e) => return Err(e.into()),
            };
            // Made by whoever runs the server: no confirmation mail.
            accounts::mark_verified(&mut tx, user.id).await?;
            audit::record(
                &mut tx,
                &Actor::cli(),
                "user.create",
                &format!("user:{}", user.id),
                &format!("{email} role={role}"),
            )
            .await?;
            tx.commit().await?;
            println!("created {role} user {email} (id {})", user.id);
            if generated {
                println!("password: {password}");
                println!("(shown once; it is stored only as an argon2id hash)");
            }
            Ok(())
        }
        AdminCommand::CreateMonitor { name, ip, db } => {
            check_monitor_name(&name)?;
            let db = Db::connect(&db.url()).await?;
            let mut tx = db.begin().await?;
            let (id, token) = match monitors::create(&mut tx, &name).await {
                Ok(created) => created,
                Err(e) if is_unique_violation(&e) => {
                    return Err(format!("a monitor named {name} exists").into());
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(ip) = ip {
                monitors::set_ip(&mut tx, id, &ip.to_string()).await?;
            }
            audit::record(
                &mut tx,
                &Actor::cli(),
                "monitor.create",
                &format!("monitor:{id} {name}"),
                "",
            )
            .await?;
            tx.commit().await?;
            println!("created monitor {name} (id {id}, state candidate)");
            println!("token: {token}");
            println!("(shown once; it is stored only as a SHA-256 hash)");
            Ok(())
        }
    }
}
