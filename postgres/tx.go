package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// txAttempts bounds how often a transaction that PostgreSQL aborted to break
// a deadlock (or a serialization failure) is run again. Each run starts
// from scratch, so a retry sees the state the winner left.
const txAttempts = 3

// rollbackTimeout bounds the ROLLBACK of a transaction whose caller's
// context may already have ended.
const rollbackTimeout = 2 * time.Second

// tx runs fn on one connection of the pool. fn brackets its statements with
// BEGIN and COMMIT itself, queued in pgx batches together with the
// statements so that they cost no round trips of their own: a pipeline of
// BEGIN, two statements and later COMMIT is two round trips, not five. If
// fn returns with the transaction still open (a refusal that commits
// nothing, or an error), tx rolls it back before the connection goes back
// to the pool; should that fail, the pool discards the connection, which
// ends the transaction on the server.
func (db *DB) tx(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	for attempt := 1; ; attempt++ {
		err := db.tx1(ctx, fn)
		if err == nil || attempt == txAttempts || !(hasCode(err, codeDeadlock) || hasCode(err, codeSerialization)) {
			return err
		}
	}
}

func (db *DB) tx1(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	err = fn(c.Conn())
	if c.Conn().PgConn().TxStatus() != 'I' && !c.Conn().IsClosed() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		// An error here leaves the status not idle, and Release then closes
		// the connection instead of returning it.
		c.Exec(rctx, "ROLLBACK")
	}
	return err
}

// begin returns a batch that opens a transaction before its statements.
// READ COMMITTED is what the store's reasoning assumes, whatever the
// database's default: each statement sees what committed before it began.
func begin() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	return b
}

// ts is a time as the store keeps it: PostgreSQL holds microseconds, and
// truncating here (as the SQLite store does) makes every query mode round
// the same way; the text protocol would otherwise round to nearest.
func ts(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = ts(t)
	return &t
}

// fromNull reads a nullable timestamp back, NULL as the zero time, in UTC
// like the SQLite store.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
