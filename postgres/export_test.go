package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenTraced is Open with tracer seeing every statement the store sends.
func OpenTraced(ctx context.Context, connString string, opts Options, tracer pgx.QueryTracer) (*DB, error) {
	cfg, err := poolConfig(connString, opts)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Tracer = tracer
	return open(ctx, cfg, opts)
}

// Warm opens every connection the pool may hold. Without it the first
// concurrent calls on a new pool queue behind connection setup, which takes
// longer than a whole call: they would run one after another, and a
// concurrency test would prove nothing.
func (db *DB) Warm(ctx context.Context) error {
	n := db.pool.Config().MaxConns
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

// SetCheckBatching replaces the store's check batcher with one that puts
// up to batch checks into a statement and runs at most leaders statements
// at once. Call it before the store is used.
func (db *DB) SetCheckBatching(batch, leaders int) {
	db.checks = newBatcherOfChecks(db, batch, leaders)
}

// QueuedChecks counts the checks waiting for a statement.
func (db *DB) QueuedChecks() int { return db.checks.queued() }

// queued counts the calls waiting for a statement.
func (b *batcher[C, R]) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// FailSharedChecks makes every statement that several checks (or several
// app checks' writes) share fail with fail's error before it is sent. Call it before the store is used.
func (db *DB) FailSharedChecks(fail func() error) { db.failSharedCheck = fail }

// SetAppWriteBatching replaces the store's batcher of authenticator app
// checks' writes with one that puts up to batch writes into a statement
// and runs at most leaders statements at once. Call it before the store
// is used.
func (db *DB) SetAppWriteBatching(batch, leaders int) {
	db.appWrites = newBatcherOfAppWrites(db, batch, leaders)
}

// QueuedAppWrites counts the app checks' writes waiting for a statement.
func (db *DB) QueuedAppWrites() int { return db.appWrites.queued() }

// AppWriteSQL is the statement authenticator app checks' writes share.
func AppWriteSQL() string { return appWriteSQL }
