-- timepool control-plane schema, version 5: mail (issue 14). Same portable
-- rules as 0001_initial.sql.

-- Every mail the site sends goes through this queue first, in the same
-- transaction as what it tells of, so none is lost when the SMTP server
-- is down: the sender (control::mail) retries with backoff. A sent mail's
-- body is cleared (it may hold a one-time link); its row stays for staff.
CREATE TABLE mail_queue (
    id __ID__,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,                  -- 'password_reset', 'invite', ...
    subject TEXT NOT NULL,
    body TEXT NOT NULL,                  -- plain text
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at BIGINT,
    failed_at BIGINT                     -- refused for good (a 5xx reply)
);
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at);

-- One-time password reset links: only the token's hash is stored.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id);
