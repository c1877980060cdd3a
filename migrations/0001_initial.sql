-- timepool control-plane schema, version 1.
--
-- One schema for SQLite and PostgreSQL. Portable rules used here:
--   * integers are BIGINT, floats DOUBLE PRECISION, strings TEXT, booleans
--     BIGINT 0/1 (the sqlx Any driver decodes these the same on both engines);
--   * timestamps are BIGINT unix seconds;
--   * the only dialect difference, the auto-increment key, is written as the
--     token __ID__ and expanded by src/db/migrate.rs at load
--     (SQLite: INTEGER PRIMARY KEY AUTOINCREMENT, PostgreSQL: BIGSERIAL PRIMARY KEY).

CREATE TABLE accounts (
    id __ID__,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id __ID__,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    email TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash TEXT NOT NULL,         -- argon2id PHC string
    role TEXT NOT NULL CHECK (role IN ('operator', 'staff')),
    created_at BIGINT NOT NULL,
    removed_at BIGINT                    -- a removed user can no longer log in
);
CREATE INDEX users_account ON users (account_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,         -- sha256 hex of the cookie value
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE invites (
    id __ID__,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    email TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX invites_account ON invites (account_id);

-- One row per address. A hostname added by an operator becomes one row per
-- A/AAAA address. `zone_override` is the operator's country choice; the
-- effective zones (country and its parents) are materialised in server_zones
-- so the zone builder and the counts read them with one join.
CREATE TABLE servers (
    id __ID__,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    address TEXT NOT NULL UNIQUE,        -- canonical text form of the IP
    ip_version BIGINT NOT NULL CHECK (ip_version IN (4, 6)),
    hostname TEXT,                       -- the name it was added by, if any
    geo_zone TEXT,                       -- country zone from GeoIP, if known
    zone_override TEXT,                  -- country zone chosen by the operator
    netspeed BIGINT NOT NULL,            -- kbit/s; 0 = monitor only
    in_pool BIGINT NOT NULL DEFAULT 1,   -- 0 = kept out of DNS by staff
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    score_ts BIGINT,                     -- when `score` was last computed
    created_at BIGINT NOT NULL,
    deletion_on BIGINT                   -- scheduled deletion time; NULL = none
);
CREATE INDEX servers_account ON servers (account_id);

CREATE TABLE server_zones (
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    zone TEXT NOT NULL,                  -- '@', continent or country name
    PRIMARY KEY (server_id, zone)
);
CREATE INDEX server_zones_zone ON server_zones (zone);

CREATE TABLE monitors (
    id __ID__,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,     -- sha256 hex of the bearer token
    state TEXT NOT NULL CHECK (state IN ('candidate', 'testing', 'active', 'paused', 'deleted')),
    ip TEXT,                             -- source address, for the /24 (/48) rule
    account_id BIGINT REFERENCES accounts (id), -- who runs it, for the own-account rule
    created_at BIGINT NOT NULL,
    last_seen BIGINT,
    last_batch_id BIGINT                 -- highest batch applied (replay protection)
);

-- The latest state of each (server, monitor) pair.
CREATE TABLE server_scores (
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    monitor_id BIGINT NOT NULL REFERENCES monitors (id),
    score DOUBLE PRECISION NOT NULL,
    score_ts BIGINT NOT NULL,
    offset_s DOUBLE PRECISION,
    rtt_s DOUBLE PRECISION,
    stratum BIGINT,
    leap BIGINT,
    error TEXT,
    PRIMARY KEY (server_id, monitor_id)
);

-- One row per check (monitor_id set) plus one per recomputed server score
-- (monitor_id NULL). The score pages and the CSV read this.
CREATE TABLE score_log (
    id __ID__,
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    monitor_id BIGINT REFERENCES monitors (id),
    ts BIGINT NOT NULL,
    offset_s DOUBLE PRECISION,
    step DOUBLE PRECISION,
    score DOUBLE PRECISION NOT NULL,
    rtt_s DOUBLE PRECISION,
    leap BIGINT,
    error TEXT
);
CREATE INDEX score_log_server_ts ON score_log (server_id, ts);

-- Batches handed to monitors (issue 6): replayed or stale batches are refused.
CREATE TABLE monitor_batches (
    id __ID__,
    monitor_id BIGINT NOT NULL REFERENCES monitors (id),
    issued_at BIGINT NOT NULL,
    applied_at BIGINT
);
CREATE TABLE monitor_batch_servers (
    batch_id BIGINT NOT NULL REFERENCES monitor_batches (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    PRIMARY KEY (batch_id, server_id)
);

CREATE TABLE vendor_zones (
    id __ID__,
    name TEXT NOT NULL UNIQUE,           -- e.g. 'debian' -> N.debian.<origin>
    client_type TEXT NOT NULL CHECK (client_type IN ('ntp', 'sntp', 'legacy', 'all')),
    description TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by BIGINT REFERENCES users (id)
);

-- Every change, by whom and when. actor is the user's email, or 'cli'.
CREATE TABLE audit_log (
    id __ID__,
    ts BIGINT NOT NULL,
    user_id BIGINT REFERENCES users (id),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,                -- e.g. 'server.add', 'monitor.state'
    target TEXT NOT NULL,                -- e.g. 'server:12'
    details TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- What the snapshot publisher wrote last (issue 7).
CREATE TABLE snapshots (
    serial BIGINT PRIMARY KEY,
    published_at BIGINT NOT NULL,
    content_hash TEXT NOT NULL
);
