-- New wrong ingest passwords per address, and the paced KDF turns of an address past the free
-- ones (photochangerd/auth/ingest_pacing.py): in the database, so several instances pace an
-- address together (one KDF run per second in all) and a restart does not reset the count.
CREATE TABLE ingest_failure (
    address    TEXT NOT NULL,
    failed_at  REAL NOT NULL
);
CREATE INDEX ingest_failure_address ON ingest_failure (address, failed_at);
CREATE TABLE ingest_pace (
    address   TEXT PRIMARY KEY,
    next_run  REAL NOT NULL
);
