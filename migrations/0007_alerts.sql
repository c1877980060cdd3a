-- Bad-server alerts (web/README.md, "Alerts and automatic removal").
--
-- One row per server that has been sent an alert and has not come back
-- above the clear score since; the rules in src/control/alert_rules.rs
-- read it to decide on repeats and automatic removal.

CREATE TABLE server_alerts (
    server_id BIGINT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    first_alert_at BIGINT NOT NULL,
    last_alert_at BIGINT NOT NULL,
    last_score DOUBLE PRECISION NOT NULL  -- the score the last alert was sent at
);
