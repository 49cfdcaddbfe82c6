-- Web console sign-ins (docs/web.md): the browser's cookie holds a random session id; only
-- its SHA-256 is stored, so a copy of the database does not sign anybody in.
CREATE TABLE admin_session (
    id_hash     TEXT PRIMARY KEY,
    username    TEXT NOT NULL REFERENCES admin_user (username),
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX admin_session_expires ON admin_session (expires_at);
