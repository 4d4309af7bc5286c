-- +goose Up
-- A user's failure budget lives beside the users, not in their rows. Every
-- counted failure rewrites it, and a users row shares its page with some
-- thirty others spread over the whole table: at a million users each failure
-- dirtied a page of its own, which the commit wrote to the WAL and the
-- checkpoint copied back. This table holds only users who have failed lately
-- (the janitor drops lapsed windows), so its few pages stay hot and a batch
-- of failures rewrites a handful of them. No row means no failure counted.
-- A rowid table, not WITHOUT ROWID: a wrong code then overwrites its row in
-- place and leaves the user_id index alone, where a WITHOUT ROWID row is
-- rewritten in its key's B-tree (measured: a wrong-code CheckPIN 20 % slower
-- than before the move, against 6 % as a rowid table).
CREATE TABLE user_failures (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failure_count INTEGER NOT NULL,
    window_start  INTEGER NOT NULL
);
INSERT INTO user_failures (user_id, failure_count, window_start)
    SELECT id, failure_count, failure_window_start FROM users WHERE failure_count > 0;
ALTER TABLE users DROP COLUMN failure_count;
ALTER TABLE users DROP COLUMN failure_window_start;

-- +goose Down
ALTER TABLE users ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failure_window_start INTEGER NOT NULL DEFAULT 0;
UPDATE users SET (failure_count, failure_window_start) =
    (SELECT failure_count, window_start FROM user_failures WHERE user_id = users.id)
    WHERE id IN (SELECT user_id FROM user_failures);
DROP TABLE user_failures;
