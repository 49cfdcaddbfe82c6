-- Admin tokens signed out before they expire (POST /api/logout): refused by every instance
-- sharing the database until their own expiry, then removed by the cleaner.
CREATE TABLE revoked_token (
    jti         TEXT PRIMARY KEY,
    expires_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX revoked_token_expires ON revoked_token (expires_at);
