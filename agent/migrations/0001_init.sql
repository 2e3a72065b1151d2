-- The agent's state store. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Times are Unix epoch milliseconds (BIGINT); label sets and matchers are JSON text;
-- flags are BIGINT 0/1; a NULL value stands for NaN (SQLite stores NaN as NULL anyway).

-- Alert state for restoring `for` after a restart: the saved alerts of each rule
-- (`rule_group` is the rules crate's group key, `rule` the alert name). A save replaces
-- every row of its (rule_group, rule) pair.
CREATE TABLE alert_state (
    rule_group        TEXT NOT NULL,
    rule              TEXT NOT NULL,
    labels            TEXT NOT NULL,
    state             TEXT NOT NULL,
    active_at         BIGINT NOT NULL,
    fired_at          BIGINT,
    keep_firing_since BIGINT,
    resolved_at       BIGINT,
    value             DOUBLE PRECISION,
    saved_at          BIGINT NOT NULL
);
CREATE INDEX alert_state_rule ON alert_state (rule_group, rule);
CREATE INDEX alert_state_saved ON alert_state (saved_at);

-- The notification log (Alertmanager's nflog): the last notification per aggregation group
-- and receiver integration (`integration` names one of the receiver's configs, e.g.
-- `webhook[0]`). `entry_key` is the SHA-256 of the three (group keys can be long);
-- `firing` and `resolved` are the sorted fingerprints (16 hex digits, comma-separated) of
-- the alerts sent as firing and as resolved; `state_hash` is the SHA-256 of both lists.
CREATE TABLE notification_log (
    entry_key    TEXT PRIMARY KEY,
    group_key    TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    integration  TEXT NOT NULL,
    firing       TEXT NOT NULL,
    resolved     TEXT NOT NULL,
    state_hash   TEXT NOT NULL,
    sent_at      BIGINT NOT NULL,
    all_resolved BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX notification_log_expires ON notification_log (expires_at);

-- Silences: alerts matching every matcher between starts_at and ends_at are not sent.
-- Expiring a silence sets ends_at to the time of expiry.
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);

-- The remediation audit log: every decision, taken or not. Ids are assigned as
-- MAX(id) + 1 inside the insert (portable; a concurrent duplicate is retried).
CREATE TABLE remediation_audit (
    id            BIGINT PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    target        TEXT NOT NULL,
    action        TEXT NOT NULL,
    decision      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    alert         TEXT NOT NULL,
    from_replicas BIGINT,
    to_replicas   BIGINT,
    detail        TEXT
);
CREATE INDEX remediation_audit_target ON remediation_audit (target, at_ms);
CREATE INDEX remediation_audit_at ON remediation_audit (at_ms);
