-- +goose Up
-- The failure budget keyed by the user's seq, the users table's integer
-- rowid, instead of the user's text id. As a rowid table it has no index
-- beside it: a lookup is one descent of one B-tree with integer keys, where
-- the text key took a descent of its index and another of the table (the
-- check benchmark's index descents fell from 9 % of the server's CPU to 5 %).
-- And a user's first failure inserts a row of a few bytes at a random place
-- (users fail in no order), where it inserted an index entry of some fifty,
-- so fewer of those inserts split a page. A split in the middle of a B-tree
-- can renumber pages, and SQLite then scans the writer's whole page cache at
-- the commit: 4.3-4.6 % of the server's CPU in that benchmark before, 3.9 %
-- after (the rest most likely from the PINs' pages, where a consume
-- lengthens a row).
CREATE TABLE user_failures_by_seq (
    user_seq      INTEGER PRIMARY KEY REFERENCES users (seq) ON DELETE CASCADE,
    failure_count INTEGER NOT NULL,
    window_start  INTEGER NOT NULL
);
INSERT INTO user_failures_by_seq (user_seq, failure_count, window_start)
    SELECT u.seq, f.failure_count, f.window_start FROM user_failures f JOIN users u ON u.id = f.user_id;
DROP TABLE user_failures;
ALTER TABLE user_failures_by_seq RENAME TO user_failures;

-- +goose Down
CREATE TABLE user_failures_by_id (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failure_count INTEGER NOT NULL,
    window_start  INTEGER NOT NULL
);
INSERT INTO user_failures_by_id (user_id, failure_count, window_start)
    SELECT u.id, f.failure_count, f.window_start FROM user_failures f JOIN users u ON u.seq = f.user_seq;
DROP TABLE user_failures;
ALTER TABLE user_failures_by_id RENAME TO user_failures;
