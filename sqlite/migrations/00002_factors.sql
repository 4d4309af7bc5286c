-- +goose Up
ALTER TABLE users ADD COLUMN last_method TEXT NOT NULL DEFAULT '';

-- One authenticator app per user; the seed is an AES-256-GCM ciphertext.
CREATE TABLE factors (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    key_id       TEXT NOT NULL,
    secret       BLOB NOT NULL,
    algorithm    TEXT NOT NULL,
    digits       INTEGER NOT NULL,
    period       INTEGER NOT NULL,
    last_step    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    activated_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX factors_key_id ON factors (key_id);

-- Replay protection: a (user, step) is accepted at most once.
CREATE TABLE totp_used_steps (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    used_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, step)
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    used_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hash)
);

-- +goose Down
DROP TABLE recovery_codes;
DROP TABLE totp_used_steps;
DROP TABLE factors;
ALTER TABLE users DROP COLUMN last_method;
