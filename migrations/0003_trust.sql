-- timepool control-plane schema, version 3: several instances on one
-- database, and the DNS nodes (issue 13). Same portable rules as
-- 0001_initial.sql.

-- The snapshot every instance serves: the last publish's exact bytes and
-- signature line (NULL: unsigned). One row, replaced on each publish, so
-- every instance serves the same bytes and ETag.
CREATE TABLE published_snapshot (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    serial BIGINT NOT NULL,
    published_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT
);

-- Leases: which instance does a job only one may do at a time (the zone
-- builder), until when (database clock, unix seconds).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Failed logins, one row each, kept for the limiter's window. The key is
-- the SHA-256 of what is limited (an email, a client network, or both),
-- so the table holds no email addresses.
CREATE TABLE login_failures (
    key_hash TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key_hash, ts);
CREATE INDEX login_failures_ts ON login_failures (ts);

-- Secrets every instance shares (the CSRF tokens' HMAC key).
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The DNS nodes that pull the snapshot: registered ones (with a token,
-- `timepool admin create-node`) and those that only sent their name.
CREATE TABLE dns_nodes (
    id __ID__,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT UNIQUE,              -- sha256 hex of the node's token; NULL: unregistered
    created_at BIGINT NOT NULL,
    last_pull_at BIGINT,
    last_address TEXT,
    serial BIGINT,                       -- the serial the node said it serves
    version TEXT
);
