-- timepool control-plane schema, version 2: monitoring (issue 6).
-- Same portable rules as 0001_initial.sql.

-- Healthy batches in a row since the monitor's last state change; drives
-- candidate -> testing -> active (src/scoring.rs, next_monitor_state).
ALTER TABLE monitors ADD COLUMN healthy_streak BIGINT NOT NULL DEFAULT 0;

-- When the server was last handed to a monitor: no two checks of one
-- server closer than 60 s, and the longest-waiting servers go first.
ALTER TABLE servers ADD COLUMN last_issued_at BIGINT;

CREATE INDEX server_scores_monitor ON server_scores (monitor_id, server_id);
CREATE INDEX monitor_batch_servers_server ON monitor_batch_servers (server_id);
CREATE INDEX monitor_batches_monitor ON monitor_batches (monitor_id, id);
