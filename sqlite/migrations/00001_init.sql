-- +goose Up
-- Times are INTEGER microseconds since the Unix epoch, UTC.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    username    TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE services (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE RESTRICT,
    name       TEXT NOT NULL,
    fqdn       TEXT NOT NULL,
    settings   TEXT NOT NULL, -- JSON of verity.Settings
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE users (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT, -- listing order
    id                   TEXT NOT NULL UNIQUE,
    service_id           TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
    id_in_service        TEXT NOT NULL,
    phone                TEXT NOT NULL,
    phone_type           TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    failure_count        INTEGER NOT NULL DEFAULT 0,
    failure_window_start INTEGER NOT NULL DEFAULT 0,
    UNIQUE (service_id, id_in_service)
);
CREATE INDEX users_service_seq ON users (service_id, seq);

-- One row per PIN sent. The newest row of a user is the pending PIN; the
-- rest are the send history the rate limits count.
CREATE TABLE pins (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    consumed_at INTEGER
);
CREATE INDEX pins_user_seq ON pins (user_id, seq);
CREATE INDEX pins_created ON pins (created_at);

-- +goose Down
DROP TABLE pins;
DROP TABLE users;
DROP TABLE services;
DROP TABLE accounts;
