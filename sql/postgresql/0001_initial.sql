-- PhotoChanger schema, PostgreSQL dialect
-- Timestamps are Unix epoch seconds (DOUBLE PRECISION): one representation on both dialects, cheap to
-- compare and to do arithmetic on in stats queries.

CREATE TABLE slot (
    id              TEXT PRIMARY KEY CHECK (id LIKE 'slot-___'),
    display_name    TEXT NOT NULL,
    provider        TEXT NOT NULL DEFAULT 'local',
    operation       TEXT NOT NULL DEFAULT 'passthrough',
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    size_limit_mb   INTEGER NOT NULL DEFAULT 20 CHECK (size_limit_mb BETWEEN 1 AND 20),
    settings        JSONB NOT NULL DEFAULT '{}',
    version         INTEGER NOT NULL DEFAULT 1,
    updated_at      DOUBLE PRECISION,
    updated_by      TEXT
);

INSERT INTO slot (id, display_name) VALUES
  ('slot-001', 'Slot 1'),
  ('slot-002', 'Slot 2'),
  ('slot-003', 'Slot 3'),
  ('slot-004', 'Slot 4'),
  ('slot-005', 'Slot 5'),
  ('slot-006', 'Slot 6'),
  ('slot-007', 'Slot 7'),
  ('slot-008', 'Slot 8'),
  ('slot-009', 'Slot 9'),
  ('slot-010', 'Slot 10'),
  ('slot-011', 'Slot 11'),
  ('slot-012', 'Slot 12'),
  ('slot-013', 'Slot 13'),
  ('slot-014', 'Slot 14'),
  ('slot-015', 'Slot 15');

-- The job table is the queue: pending -> processing -> finalized (is_finalized, failure_reason).
CREATE TABLE job (
    id                      TEXT PRIMARY KEY,
    slot_id                 TEXT NOT NULL REFERENCES slot (id),
    source                  TEXT NOT NULL CHECK (source IN ('ingest', 'test_run')),
    status                  TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing')),
    is_finalized            BOOLEAN NOT NULL DEFAULT FALSE,
    failure_reason          TEXT CHECK (failure_reason IN ('timeout', 'provider_error', 'cancelled', 'internal_error')),
    failure_details         TEXT,
    response_status         INTEGER,
    provider                TEXT NOT NULL,
    operation               TEXT NOT NULL,
    settings                JSONB NOT NULL DEFAULT '{}',
    created_at              DOUBLE PRECISION NOT NULL,
    started_at              DOUBLE PRECISION,
    finalized_at            DOUBLE PRECISION,
    deadline                DOUBLE PRECISION NOT NULL,
    claimed_by              TEXT,
    attempts                INTEGER NOT NULL DEFAULT 0,
    provider_job_reference  TEXT,
    client_metadata         JSONB NOT NULL DEFAULT '{}',
    input_path              TEXT,
    input_mime_type         TEXT,
    result_file_path        TEXT,
    result_mime_type        TEXT,
    result_size_bytes       BIGINT,
    result_checksum         TEXT,
    result_expires_at       DOUBLE PRECISION
);
CREATE INDEX job_pending_idx ON job (created_at) WHERE status = 'pending' AND is_finalized = FALSE;
CREATE INDEX job_unfinalized_deadline_idx ON job (deadline) WHERE is_finalized = FALSE;
CREATE INDEX job_slot_created_idx ON job (slot_id, created_at);
CREATE INDEX job_created_idx ON job (created_at);
CREATE INDEX job_result_expiry_idx ON job (result_expires_at) WHERE result_file_path IS NOT NULL;

-- Permanent reference images (style, face, frame...). Never touched by the cleaner.
CREATE TABLE template_media (
    id          TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    mime_type   TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    checksum    TEXT NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    created_by  TEXT
);

CREATE TABLE slot_template (
    slot_id      TEXT NOT NULL REFERENCES slot (id),
    position     INTEGER NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('style', 'face', 'frame', 'reference')),
    template_id  TEXT NOT NULL REFERENCES template_media (id),
    PRIMARY KEY (slot_id, position)
);

-- Short-lived public copies of inputs for providers that fetch by URL; expire at the deadline.
CREATE TABLE media_object (
    id          TEXT PRIMARY KEY,
    job_id      TEXT REFERENCES job (id),
    path        TEXT NOT NULL,
    mime_type   TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    cleaned_at  DOUBLE PRECISION
);
CREATE INDEX media_object_expiry_idx ON media_object (expires_at) WHERE cleaned_at IS NULL;

-- One row per ingest attempt, rejected ones included (stats and audits).
CREATE TABLE processing_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at      DOUBLE PRECISION NOT NULL,
    slot_id         TEXT,
    job_id          TEXT,
    source          TEXT NOT NULL,
    status_code     INTEGER NOT NULL,
    failure_reason  TEXT,
    duration_ms     DOUBLE PRECISION NOT NULL
);
CREATE INDEX processing_log_created_idx ON processing_log (created_at);
CREATE INDEX processing_log_slot_created_idx ON processing_log (slot_id, created_at);

CREATE TABLE app_settings (
    key         TEXT PRIMARY KEY,
    value       JSONB NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    updated_by  TEXT
);

CREATE TABLE provider_secret (
    provider    TEXT PRIMARY KEY,
    ciphertext  BYTEA NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    updated_by  TEXT
);

CREATE TABLE admin_user (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    updated_at     DOUBLE PRECISION NOT NULL
);
