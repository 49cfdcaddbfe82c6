-- Failed admin sign-ins and the locks they cause (photochangerd/auth/throttle.py): counted in
-- the database, so several instances sharing it give a guesser no more attempts than one.
CREATE TABLE login_failure (
    key        TEXT NOT NULL,
    failed_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_failure_key ON login_failure (key, failed_at);
CREATE TABLE login_lock (
    key           TEXT PRIMARY KEY,
    locked_until  DOUBLE PRECISION NOT NULL
);
