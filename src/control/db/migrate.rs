//! Runs the schema migrations in migrations/ (embedded in the binary).
//!
//! The SQL files are shared by both engines; the one dialect difference, the
//! auto-increment primary key, is written `__ID__` and expanded here.

use std::borrow::Cow;

use sqlx::AssertSqlSafe;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::{Db, DbError, Engine};

/// (version, description, SQL). Append new files here; never edit old ones.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "monitoring",
        include_str!("../../../migrations/0002_monitoring.sql"),
    ),
    (
        3,
        "trust",
        include_str!("../../../migrations/0003_trust.sql"),
    ),
    (4, "news", include_str!("../../../migrations/0004_news.sql")),
    (5, "mail", include_str!("../../../migrations/0005_mail.sql")),
    (
        6,
        "verify",
        include_str!("../../../migrations/0006_verify.sql"),
    ),
    (
        7,
        "alerts",
        include_str!("../../../migrations/0007_alerts.sql"),
    ),
    (
        8,
        "login_deletion",
        include_str!("../../../migrations/0008_login_deletion.sql"),
    ),
    (
        9,
        "ownership",
        include_str!("../../../migrations/0009_ownership.sql"),
    ),
    (
        10,
        "monitor_pairs",
        include_str!("../../../migrations/0010_monitor_pairs.sql"),
    ),
];

fn expand(sql: &str, engine: Engine) -> String {
    let id = match engine {
        Engine::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Engine::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    sql.replace("__ID__", id)
}

/// Runs the migrations up to `version` (`i64::MAX`: all of them; a test
/// of a migration makes the schema before it, writes rows the old way,
/// then runs the rest).
pub async fn run_up_to(db: &Db, version: i64) -> Result<(), DbError> {
    let migrations = MIGRATIONS
        .iter()
        .filter(|(v, _, _)| *v <= version)
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(expand(sql, db.engine))),
                false,
            )
        })
        .collect();
    let migrator = Migrator::with_migrations(migrations);
    migrator.run(&db.pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(inner) => inner,
        other => DbError::Migrate(Box::new(other)),
    })
}
