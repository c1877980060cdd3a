-- timepool control-plane schema, version 10: a state per (server, monitor)
-- pair and the selector that sets it, scheduling by pair, monitors that
-- check their own clock (issue 15; web/README.md, "Monitoring"). Same
-- portable rules as 0001_initial.sql.

-- server_scores becomes the pair table. Rebuilt (SQLite cannot drop a NOT
-- NULL) with:
--   status        the pair's state: candidate, testing, active, or paused
--                 by staff (the selector leaves a paused pair alone);
--   status_since  when it got that state;
--   good_points   good data points the pair has had (no error, offset
--                 within 100 ms): 9 make a candidate testing, 60 active;
--   avg_step      the pair's recent mean step (moving average): a pair
--                 is healthy while it is >= 0;
--   avg_rtt       the pair's recent mean round trip (moving average), to
--                 prefer the closest monitors;
--   score_ts      NULL until the pair's first check;
--   last_issued_at when the server was last handed to this monitor.
-- Today's pairs keep their scores and take their monitor's state: an
-- active monitor's pairs are active, and so on; the log (score_log) is
-- not touched.
CREATE TABLE server_scores_v10 (
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    monitor_id BIGINT NOT NULL REFERENCES monitors (id),
    status TEXT NOT NULL CHECK (status IN ('candidate', 'testing', 'active', 'paused')),
    status_since BIGINT NOT NULL,
    good_points BIGINT NOT NULL DEFAULT 0,
    avg_step DOUBLE PRECISION,
    avg_rtt DOUBLE PRECISION,
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    score_ts BIGINT,
    offset_s DOUBLE PRECISION,
    rtt_s DOUBLE PRECISION,
    stratum BIGINT,
    leap BIGINT,
    error TEXT,
    last_issued_at BIGINT,
    PRIMARY KEY (server_id, monitor_id)
);
INSERT INTO server_scores_v10 (server_id, monitor_id, status, status_since, good_points,
                               avg_step, avg_rtt, score, score_ts, offset_s, rtt_s,
                               stratum, leap, error, last_issued_at)
SELECT ss.server_id, ss.monitor_id,
       CASE m.state WHEN 'active' THEN 'active' WHEN 'testing' THEN 'testing' ELSE 'candidate' END,
       ss.score_ts,
       -- The history earned the pair its state; count it as the points it
       -- needed, so the first selector pass does not undo the move.
       CASE m.state WHEN 'active' THEN 60 WHEN 'testing' THEN 9 ELSE 0 END,
       CASE WHEN ss.score >= 0 THEN 1.0 ELSE -1.0 END,
       ss.rtt_s, ss.score, ss.score_ts, ss.offset_s, ss.rtt_s, ss.stratum, ss.leap, ss.error,
       ss.score_ts
FROM server_scores ss JOIN monitors m ON m.id = ss.monitor_id
WHERE m.state <> 'deleted';
DROP TABLE server_scores;
ALTER TABLE server_scores_v10 RENAME TO server_scores;
CREATE INDEX server_scores_monitor ON server_scores (monitor_id, server_id);

-- An operator's "check now": every pair of the server is due at once.
ALTER TABLE servers ADD COLUMN check_requested_at BIGINT;

-- The monitor's latest self-check (its clock against its reference NTP
-- servers): 1 ok, 0 not ok, NULL never reported; when, the measured
-- offset, and the agent's words for staff; and when it last reported
-- itself not ok (no batch issued before that is scored).
ALTER TABLE monitors ADD COLUMN self_check_ok BIGINT;
ALTER TABLE monitors ADD COLUMN self_check_at BIGINT;
ALTER TABLE monitors ADD COLUMN self_check_offset DOUBLE PRECISION;
ALTER TABLE monitors ADD COLUMN self_check_detail TEXT;
ALTER TABLE monitors ADD COLUMN self_check_failed_at BIGINT;
