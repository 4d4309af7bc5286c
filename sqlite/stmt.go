package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache prepares each query once per pool. SQLite spends more time
// parsing a statement than running the small ones Verity uses, so the hot
// path must never parse. database/sql prepares a cached *sql.Stmt on each
// connection the first time it runs there and reuses it after.
type stmtCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

// get returns the prepared statement for query, preparing it on first use.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.RLock()
	s, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = s
	return s, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	clear(c.m)
}

// queryRow runs a one-row read on the reader pool.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := db.readStmts.get(ctx, query)
	if err != nil {
		return db.reader.QueryRowContext(ctx, query, args...) // surfaces the error through Scan
	}
	return s.QueryRowContext(ctx, args...)
}
