-- Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Ids are UUID strings made by the service; times are Unix epoch milliseconds.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    date_of_birth TEXT,
    password_hash TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    patient_id   TEXT NOT NULL REFERENCES users (id),
    clinician_id TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX grants_pair ON grants (patient_id, clinician_id);
CREATE INDEX grants_clinician ON grants (clinician_id);

CREATE TABLE reports (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL REFERENCES users (id),
    author_id     TEXT NOT NULL REFERENCES users (id),
    original      TEXT NOT NULL,
    parsed_count  BIGINT NOT NULL,
    skipped_count BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX reports_patient ON reports (patient_id, created_at);

CREATE TABLE records (
    id          TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES users (id),
    author_id   TEXT NOT NULL REFERENCES users (id),
    kind        TEXT NOT NULL,
    code        TEXT,
    value       DOUBLE PRECISION,
    unit        TEXT,
    text        TEXT,
    observed_at BIGINT NOT NULL,
    report_id   TEXT REFERENCES reports (id),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX records_patient ON records (patient_id, created_at);
CREATE INDEX records_patient_code ON records (patient_id, code, observed_at);

CREATE TABLE assessments (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL REFERENCES users (id),
    author_id     TEXT NOT NULL REFERENCES users (id),
    score         BIGINT NOT NULL,
    category      TEXT NOT NULL,
    factors       TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX assessments_patient ON assessments (patient_id, created_at);

-- Every read or write of a health record (records, reports, assessments), allowed or not.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id TEXT,
    patient_id  TEXT,
    outcome     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
