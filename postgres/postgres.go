// Package postgres is the verity.Store for PostgreSQL, for running several
// Verity nodes against one database. It needs PostgreSQL 10 or newer and is
// tested on 15.
//
// # Connection
//
// Open takes a libpq-style connection string, either a URL or key=value
// pairs, for example
//
//	postgres://verity:secret@db.example.com:5432/verity?sslmode=verify-full
//
// The PG* environment variables (PGHOST, PGPASSWORD, PGSSLMODE, …) fill in
// what the string leaves out, as with psql. pgx's pool parameters
// (pool_max_conns, pool_min_conns, pool_max_conn_lifetime,
// pool_max_conn_idle_time) and default_query_exec_mode are honoured; a
// non-zero field of Options overrides them.
//
// # Pool defaults
//
// MaxConns is 4 × GOMAXPROCS (every store call holds a connection for one
// or two round trips, so a few per core keep the CPUs busy without queueing
// in PostgreSQL), MinConns 0, connections live at most an hour and are
// closed after 30 idle minutes, connecting times out after 5 s, and every
// store call is bounded by a 5 s context deadline (Options.StatementTimeout).
// The deadline is enforced in Go, not with the statement_timeout setting:
// PgBouncer refuses that as a startup parameter, and a SET would be session
// state that transaction pooling hands on to other clients. When it passes,
// pgx closes the connection, so nothing the call began can commit; the
// server stops the query when it notices. To bound queries on the server
// too, set it on the role: ALTER ROLE verity SET statement_timeout = '5s'.
//
// # PgBouncer
//
// The store works behind PgBouncer in transaction pooling mode (its tests
// run through PgBouncer 1.18 when VERITY_TEST_PGBOUNCER_URL is set). It keeps no
// session state between statements: no SET, no temporary tables, no LISTEN,
// and no session-level advisory locks (Migrate serializes nodes with a
// transaction-scoped one). Every atomic operation is a single statement or a
// transaction, and PgBouncer pins a transaction to one server connection.
//
// What must change for PgBouncer is pgx's statement mode. By default pgx
// prepares each statement once per connection under a name
// (QueryExecModeCacheStatement): the fastest choice for a direct connection,
// but PgBouncer before 1.21 (or with max_prepared_statements = 0) may run the
// next statement on a server connection where that name does not exist.
// Behind PgBouncer set Options.QueryExecMode to pgx.QueryExecModeCacheDescribe
// (or put default_query_exec_mode=cache_describe in the URL): statements are
// then sent unnamed, still in one round trip, with only their parameter and
// result types cached on the client. pgx.QueryExecModeExec and
// pgx.QueryExecModeSimpleProtocol work too and cache nothing. With either
// cached mode, restart the nodes after a migration that changes a column's
// type, as pgx notes.
//
// # Concurrency
//
// The store relies on READ COMMITTED, PostgreSQL's default: leave the
// database's default_transaction_isolation alone (its transactions ask for
// READ COMMITTED themselves, but single statements cannot). Consuming a PIN,
// a time step or a recovery code is one UPDATE whose WHERE re-checks the
// state: a concurrent UPDATE of the same row waits for the first and then
// re-evaluates the WHERE against the row it committed, so at most one wins.
// Transactions lock the user's row before any of its PINs, so two of them
// cannot deadlock on each other.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/internal/schema"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Defaults for the zero fields of Options.
const (
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 5 * time.Second
)

// migrateLockKey names the advisory lock that serializes Migrate across
// nodes ("verity" in ASCII, then 1).
const migrateLockKey int64 = 0x7665726974790001

// Options tune the connection pool. A zero field keeps the connection
// string's setting if it has one, else the default given.
type Options struct {
	MaxConns         int32         // pool size; default 4 × GOMAXPROCS
	MinConns         int32         // connections kept open when idle; default 0
	ConnectTimeout   time.Duration // per connection attempt; default 5 s
	StatementTimeout time.Duration // deadline of each store call; default 5 s, negative for none
	MaxConnLifetime  time.Duration // default 1 h
	MaxConnIdleTime  time.Duration // default 30 min

	// QueryExecMode is how pgx sends statements; the zero value keeps the
	// URL's default_query_exec_mode, else pgx.QueryExecModeCacheStatement.
	// Behind PgBouncer in transaction mode use pgx.QueryExecModeCacheDescribe.
	QueryExecMode pgx.QueryExecMode

	// CheckBatch is how many concurrent PIN checks one statement may
	// decide together, and how many authenticator app checks' writes one
	// statement may make; default DefaultCheckBatch, 1 for a statement per
	// check. Checks queue for a statement only while a quarter of the
	// pool's connections already run check statements (and app writes
	// while another quarter run theirs), so a lone check never waits.
	CheckBatch int
}

// DB is a verity.Store on a PostgreSQL database, safe for concurrent use by
// any number of goroutines and nodes.
type DB struct {
	pool      *pgxpool.Pool
	timeout   time.Duration // per store call; 0 for none
	checks    *checkBatcher
	appWrites *appWriteBatcher

	failSharedCheck func() error // tests: fails a shared statement (checks, app writes) before it is sent
}

var _ verity.Store = (*DB)(nil)

// Open connects to the database at connString and checks that it answers.
// Call Migrate (or CheckSchema) before use.
func Open(ctx context.Context, connString string, opts Options) (*DB, error) {
	cfg, err := poolConfig(connString, opts)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, opts)
}

// open opens the pool cfg describes (Open's second half; tests trace it).
func open(ctx context.Context, cfg *pgxpool.Config, opts Options) (*DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool, timeout: opts.StatementTimeout}
	db.checks = newCheckBatcher(db, opts.CheckBatch, int(cfg.MaxConns))
	db.appWrites = newAppWriteBatcher(db, opts.CheckBatch, int(cfg.MaxConns))
	switch {
	case opts.StatementTimeout == 0:
		db.timeout = DefaultStatementTimeout
	case opts.StatementTimeout < 0:
		db.timeout = 0
	}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s@%s/%s: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return db, nil
}

// poolConfig parses connString and applies opts and the defaults.
func poolConfig(connString string, opts Options) (*pgxpool.Config, error) {
	// Parse errors from pgx redact the password.
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// pgxpool removes its own parameters while parsing; parse again to see
	// whether the string chose a pool size.
	raw, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	_, sizeGiven := raw.RuntimeParams["pool_max_conns"]

	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !sizeGiven:
		cfg.MaxConns = int32(4 * runtime.GOMAXPROCS(0))
	}
	if opts.MinConns > 0 {
		cfg.MinConns = opts.MinConns
	}
	if cfg.MinConns > cfg.MaxConns {
		return nil, fmt.Errorf("postgres: MinConns %d exceeds MaxConns %d", cfg.MinConns, cfg.MaxConns)
	}
	if opts.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = opts.MaxConnLifetime
	}
	if opts.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = opts.MaxConnIdleTime
	}
	switch {
	case opts.ConnectTimeout > 0:
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	case cfg.ConnConfig.ConnectTimeout == 0:
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.QueryExecMode != 0 {
		cfg.ConnConfig.DefaultQueryExecMode = opts.QueryExecMode
	}
	// Name the connections in pg_stat_activity unless the string does.
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "verity"
	}
	return cfg, nil
}

// Migrate applies pending schema migrations. Nodes may call it at the same
// time: a transaction-scoped advisory lock, held on a connection of its own
// for the whole run, lets one migrate while the others wait and then find
// nothing to do. It refuses a database whose schema is newer than this
// binary knows. Migrate is not bounded by Options.StatementTimeout.
func (db *DB) Migrate(ctx context.Context) error {
	lockConn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer lockConn.Close(context.WithoutCancel(ctx))
	// A transaction-scoped lock rather than a session one: behind PgBouncer in
	// transaction mode the open transaction pins one server connection, so the
	// lock lives exactly as long as it; ending the transaction releases it.
	lockTx, err := lockConn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer lockTx.Rollback(context.WithoutCancel(ctx))
	if _, err := lockTx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}

	p, closeMigrator, err := db.migrator()
	if err != nil {
		return err
	}
	defer closeMigrator()
	// Checked under the lock, so that no newer node can migrate in between.
	if err := schema.CheckNotNewer(ctx, p); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// CheckSchema returns an error unless the schema is exactly the one this
// binary knows.
func (db *DB) CheckSchema(ctx context.Context) error {
	p, closeMigrator, err := db.migrator()
	if err != nil {
		return err
	}
	defer closeMigrator()
	return schema.CheckCurrent(ctx, p)
}

// HasSchema reports whether the database holds Verity's schema, of any
// version: the migrations' version table, where the search path finds it.
// It creates nothing, where CheckSchema and Migrate create that table in a
// database without it.
func (db *DB) HasSchema(ctx context.Context) (bool, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var ok bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&ok); err != nil {
		return false, fmt.Errorf("check schema: %w", err)
	}
	return ok, nil
}

// migrator returns a goose provider on a database/sql view of the pool;
// closing it leaves the pool open.
func (db *DB) migrator() (*goose.Provider, func() error, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, nil, err
	}
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	return p, sqlDB.Close, nil
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if err := db.pool.Ping(ctx); err != nil {
		return translate("postgres.Ping", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// bound applies the per-call deadline of Options.StatementTimeout.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if db.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, db.timeout)
}
