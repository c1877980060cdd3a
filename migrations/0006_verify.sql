-- timepool control-plane schema, version 6: confirmed email addresses
-- (issue 14). Same portable rules as 0001_initial.sql.

-- When the user proved the address is theirs (a mailed link, or an
-- invitation mailed to it); NULL: not yet, and the account cannot add
-- servers. Logins from before this rule count as confirmed.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
UPDATE users SET email_verified_at = created_at;

-- One-time confirmation links: only the token's hash is stored.
CREATE TABLE email_verifications (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    email TEXT NOT NULL,                 -- the address the link confirms
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);
