-- timepool control-plane schema, version 9: owners and members of an
-- account, and servers verified from their own address (issue 14; web/
-- README.md, "Owners, members and verified servers"). Same portable rules
-- as 0001_initial.sql.

-- A user's part in their account: owners invite, remove users and change
-- roles; members look after the servers. The first user of each account
-- becomes its owner; every other existing user a member.
ALTER TABLE users ADD COLUMN account_role TEXT NOT NULL DEFAULT 'member'
    CHECK (account_role IN ('owner', 'member'));
UPDATE users SET account_role = 'owner'
    WHERE id IN (SELECT MIN(id) FROM users WHERE removed_at IS NULL GROUP BY account_id);

-- When the server was shown to be run by its account (an HTTP request from
-- its own address to a one-time URL, or staff approval); NULL: not yet, and
-- its netspeed is capped. Servers from before this rule count as verified.
ALTER TABLE servers ADD COLUMN verified_at BIGINT;
UPDATE servers SET verified_at = created_at;

-- One-time verification URLs: only the token's hash is stored. account_id
-- is the account that asked: the server's own, or another claiming the
-- address (the server moves to it when the request comes from the address).
CREATE TABLE server_verifications (
    token_hash TEXT PRIMARY KEY,
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX server_verifications_server ON server_verifications (server_id);
