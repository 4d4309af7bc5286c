// Package storeopen opens the store a database name selects: a postgres://
// URL means PostgreSQL, anything else is a SQLite file path. The binary and
// the benchmark share it.
package storeopen

import (
	"context"
	"strings"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/sqlite"
)

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// migratable is a store that can bring its schema up to date.
type migratable interface {
	verity.Store
	Migrate(ctx context.Context) error
}

// Options are the settings of a database that its name does not carry.
type Options struct {
	SQLite   sqlite.Options   // ignored for PostgreSQL
	Postgres postgres.Options // ignored for SQLite
}

// Open opens and migrates the database dsn names, with default options.
func Open(ctx context.Context, dsn string) (verity.Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith opens and migrates the database dsn names. PostgreSQL pool size and
// statement mode come from the URL (pool_max_conns;
// default_query_exec_mode=cache_describe behind PgBouncer).
func OpenWith(ctx context.Context, dsn string, opts Options) (verity.Store, error) {
	var (
		db  migratable
		err error
	)
	if IsPostgres(dsn) {
		db, err = postgres.Open(ctx, dsn, opts.Postgres)
	} else {
		db, err = sqlite.OpenWith(dsn, opts.SQLite)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
