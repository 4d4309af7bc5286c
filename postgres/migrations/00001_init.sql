-- +goose Up
-- The schema of the SQLite store (sqlite/migrations 00001 and 00002) in
-- PostgreSQL's own types: timestamptz (microseconds, UTC on read), bytea,
-- identity columns for creation order, NULL where SQLite stores 0 for
-- "never". Identifiers and names are COLLATE "C": byte order and byte
-- equality, as SQLite's BINARY collation, whatever the database's locale.
-- Ids are text, not uuid, so that a malformed id in a request is simply not
-- found.

CREATE TABLE accounts (
    id          text COLLATE "C" PRIMARY KEY,
    username    text COLLATE "C" NOT NULL UNIQUE,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE services (
    id         text COLLATE "C" PRIMARY KEY,
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE RESTRICT,
    name       text COLLATE "C" NOT NULL,
    fqdn       text NOT NULL,
    -- verity.Settings as JSON. json, not jsonb: it keeps a \u0000 that a
    -- message template may hold, and the store never queries inside it.
    settings   json NOT NULL CHECK (json_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE users (
    id                   text COLLATE "C" PRIMARY KEY,
    seq                  bigint GENERATED ALWAYS AS IDENTITY, -- listing order
    service_id           text COLLATE "C" NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
    id_in_service        text COLLATE "C" NOT NULL,
    phone                text NOT NULL,
    phone_type           text NOT NULL,
    created_at           timestamptz NOT NULL,
    last_method          text NOT NULL DEFAULT '',
    -- The failure budget: a window opens at the first failure (NULL: none yet).
    failure_count        integer NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
    failure_window_start timestamptz,
    UNIQUE (service_id, id_in_service),
    CHECK (failure_count = 0 OR failure_window_start IS NOT NULL)
);
CREATE INDEX users_service_seq ON users (service_id, seq);

-- One row per PIN sent. The newest row of a user (highest seq) is the
-- pending PIN; the rest are the send history the rate limits count.
CREATE TABLE pins (
    id          text COLLATE "C" PRIMARY KEY,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    user_id     text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    consumed_at timestamptz
);
CREATE INDEX pins_user_seq ON pins (user_id, seq);
CREATE INDEX pins_created ON pins (created_at);

-- One authenticator app per user; the seed is an AES-256-GCM ciphertext.
CREATE TABLE factors (
    id           text COLLATE "C" PRIMARY KEY,
    user_id      text COLLATE "C" NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    status       text NOT NULL CHECK (status IN ('pending', 'active')),
    key_id       text COLLATE "C" NOT NULL,
    secret       bytea NOT NULL,
    algorithm    text NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       integer NOT NULL CHECK (digits > 0),
    period       integer NOT NULL CHECK (period > 0),
    last_step    bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    CHECK ((status = 'active') = (activated_at IS NOT NULL))
);
CREATE INDEX factors_key_id ON factors (key_id);

-- Replay protection: a (user, step) is accepted at most once.
CREATE TABLE totp_used_steps (
    user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    step    bigint NOT NULL,
    used_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, step)
);

CREATE TABLE recovery_codes (
    user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    bytea NOT NULL,
    used_at timestamptz, -- NULL while unused
    PRIMARY KEY (user_id, hash)
);

-- +goose Down
DROP TABLE recovery_codes;
DROP TABLE totp_used_steps;
DROP TABLE factors;
DROP TABLE pins;
DROP TABLE users;
DROP TABLE services;
DROP TABLE accounts;
