-- +goose Up
-- PINs without the unique index on their text ids. Every lookup of a PIN
-- goes through its user (pins_user_seq) or its seq, and ids are UUIDv7 the
-- server makes, so the index only cost a fourth B-tree insert per start,
-- about 45 bytes a row and the pages to write them; only a counted try and
-- an abort searched it. The AUTOINCREMENT counter carries over, so no seq
-- is given twice.
CREATE TABLE pins_by_seq (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    consumed_at INTEGER
);
INSERT INTO pins_by_seq (seq, id, user_id, hash, created_at, expires_at, attempts, consumed_at)
    SELECT seq, id, user_id, hash, created_at, expires_at, attempts, consumed_at FROM pins;
DELETE FROM sqlite_sequence WHERE name = 'pins_by_seq';
INSERT INTO sqlite_sequence (name, seq) SELECT 'pins_by_seq', seq FROM sqlite_sequence WHERE name = 'pins';
DROP TABLE pins;
ALTER TABLE pins_by_seq RENAME TO pins;
CREATE INDEX pins_user_seq ON pins (user_id, seq);
CREATE INDEX pins_created ON pins (created_at);

-- +goose Down
-- Fails if two PINs came to share an id meanwhile; ids are UUIDv7 the
-- server makes, so none do.
CREATE TABLE pins_unique_id (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    consumed_at INTEGER
);
INSERT INTO pins_unique_id (seq, id, user_id, hash, created_at, expires_at, attempts, consumed_at)
    SELECT seq, id, user_id, hash, created_at, expires_at, attempts, consumed_at FROM pins;
DELETE FROM sqlite_sequence WHERE name = 'pins_unique_id';
INSERT INTO sqlite_sequence (name, seq) SELECT 'pins_unique_id', seq FROM sqlite_sequence WHERE name = 'pins';
DROP TABLE pins;
ALTER TABLE pins_unique_id RENAME TO pins;
CREATE INDEX pins_user_seq ON pins (user_id, seq);
CREATE INDEX pins_created ON pins (created_at);
