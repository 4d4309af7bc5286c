// Package storeopen opens the store a database name selects: a postgres://
// URL or a libpq keyword/value string means PostgreSQL, anything else is a
// SQLite file path. The binary and the benchmark share it.
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/internal/schema"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/sqlite"
)

// IsPostgres reports whether dsn names a PostgreSQL database: a
// postgres:// or postgresql:// URL, the scheme in any case, or a libpq
// keyword/value string such as "host=db.internal dbname=verity user=verity"
// (pgx parses both). Anything else would be taken for a SQLite file name,
// and a file of that name created.
func IsPostgres(dsn string) bool {
	_, isURL := postgresURL(dsn)
	return isURL || keywordDSN.MatchString(dsn)
}

// postgresURL reports whether dsn is a postgres:// or postgresql:// URL,
// the scheme in any case, and returns it with the scheme in lower case:
// pgx takes a URL for one only so.
func postgresURL(dsn string) (string, bool) {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if lower := strings.ToLower(scheme); ok && (lower == "postgres" || lower == "postgresql") {
		return lower + "://" + rest, true
	}
	return dsn, false
}

// keywordDSN matches a libpq keyword/value string: a keyword that says
// where or as whom to connect, at the start or after white space, then
// "=". A file path matches only if it holds, say, "host=" there.
var keywordDSN = regexp.MustCompile(`(?i)(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|connect_timeout|target_session_attrs)\s*=`)

// store is what both SQL stores offer beyond verity.Store.
type store interface {
	verity.Store
	Migrate(ctx context.Context) error
	CheckSchema(ctx context.Context) error
	HasSchema(ctx context.Context) (bool, error)
}

// Mode says what opening may do to a database's file; Schema, what it may
// do to its schema.
type Mode int

const (
	// Create (the zero value) creates a SQLite file that does not exist.
	Create Mode = iota
	// MustExist refuses a SQLite file that does not exist, creating
	// nothing: a command run in the wrong folder must not start a new,
	// empty installation there. (A PostgreSQL database that does not
	// exist cannot be connected to.)
	MustExist
	// AsIs changes nothing: the database must already exist and hold
	// exactly this binary's schema (SchemaMustBeCurrent, whatever Schema
	// says), and a SQLite file is opened read-only. It reads a database
	// that a server of another release may be serving, under which a
	// migration would change the schema (and which a typo must not create).
	AsIs
)

// Options say how to open a database: what opening may do to it, and the
// settings its name does not carry.
type Options struct {
	Mode Mode
	// Schema says what opening may do to the schema; AsIs implies
	// SchemaMustBeCurrent.
	Schema   Schema
	SQLite   sqlite.Options   // ignored for PostgreSQL
	Postgres postgres.Options // ignored for SQLite
}

// Schema says what opening may do to a database's schema.
type Schema int

const (
	// SchemaMigrate (the zero value) brings the schema up to date,
	// creating it in a database without one: serve and migrate.
	SchemaMigrate Schema = iota
	// SchemaCreateIfMissing gives a database without a schema (a new
	// SQLite file, an empty PostgreSQL database) this binary's, as an
	// installation starts, and otherwise refuses one not exactly this
	// binary's rather than migrate it: run by a newer binary against a
	// database an older release still serves, a migration would change the
	// schema under that server and take away its rollback. account create.
	SchemaCreateIfMissing
	// SchemaMustBeCurrent refuses a database without exactly this binary's
	// schema and changes none: the commands that only read or change an
	// installation's records (account list, keys reencrypt, a copy's
	// source) must not turn a mistyped database into one.
	SchemaMustBeCurrent
)

// Open opens and migrates the database dsn names, with default options.
func Open(ctx context.Context, dsn string) (verity.Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith opens the database dsn names and, as opts.Schema says, migrates
// it or checks that its schema is this binary's. PostgreSQL pool size and
// statement mode come from the URL or keyword/value string (pool_max_conns;
// default_query_exec_mode=cache_describe behind PgBouncer).
func OpenWith(ctx context.Context, dsn string, opts Options) (verity.Store, error) {
	if opts.Mode != Create && opts.Mode != MustExist && opts.Mode != AsIs {
		return nil, fmt.Errorf("storeopen: unknown mode %d", opts.Mode)
	}
	if opts.Schema != SchemaMigrate && opts.Schema != SchemaCreateIfMissing && opts.Schema != SchemaMustBeCurrent {
		return nil, fmt.Errorf("storeopen: unknown schema policy %d", opts.Schema)
	}
	// what names the database in errors; never a URL, which may hold a password.
	what := "the PostgreSQL database"
	if !IsPostgres(dsn) {
		what = "database " + dsn
		// Opening a SQLite file creates it.
		if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) && opts.Mode != Create {
			return nil, &noDatabaseError{path: dsn}
		}
	}
	var (
		db  store
		err error
	)
	if IsPostgres(dsn) {
		if url, ok := postgresURL(dsn); ok {
			dsn = url
		}
		db, err = postgres.Open(ctx, dsn, opts.Postgres)
	} else {
		sqliteOpts := opts.SQLite
		// Read as it is, a source need not be writable: a backup on
		// read-only storage, another user's file.
		sqliteOpts.ReadOnly = sqliteOpts.ReadOnly || opts.Mode == AsIs
		db, err = sqlite.OpenWith(dsn, sqliteOpts)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case opts.Mode == AsIs || opts.Schema == SchemaMustBeCurrent:
		err = checkSchema(ctx, db, what)
	case opts.Schema == SchemaCreateIfMissing:
		err = schemaUnchanged(ctx, db, what)
	default:
		err = db.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ErrNoDatabase is what the error for a SQLite file that must exist and
// does not wraps.
var ErrNoDatabase = errors.New("no such database")

// noDatabaseError names the SQLite file that must exist and does not.
type noDatabaseError struct{ path string }

func (e *noDatabaseError) Error() string { return "no SQLite database at " + e.path }
func (e *noDatabaseError) Unwrap() error { return ErrNoDatabase }

// checkSchema returns an error unless db holds exactly this binary's
// schema. It asks first whether there is a schema at all: CheckSchema
// would create the migrations' version table in a database without it.
func checkSchema(ctx context.Context, db store, what string) error {
	has, err := db.HasSchema(ctx)
	if err != nil {
		return err
	}
	if !has {
		return fmt.Errorf("%s holds no Verity schema: is it the right database?", what)
	}
	return checkVersion(ctx, db, what)
}

// schemaUnchanged gives a database without Verity's schema this binary's
// and returns an error unless one that has a schema holds exactly this
// binary's, which it leaves as it is.
func schemaUnchanged(ctx context.Context, db store, what string) error {
	has, err := db.HasSchema(ctx)
	if err != nil {
		return err
	}
	if !has {
		// Migrate takes PostgreSQL's migration lock and refuses a newer
		// schema, should a server have created one since.
		return db.Migrate(ctx)
	}
	return checkVersion(ctx, db, what)
}

// checkVersion returns an error, in one line saying what to do, unless
// the schema of db, which has one, is exactly this binary's.
func checkVersion(ctx context.Context, db store, what string) error {
	err := db.CheckSchema(ctx)
	var newer *schema.NewerError
	switch {
	case errors.Is(err, schema.ErrOlder):
		return fmt.Errorf("%s has an older schema than this release's: use the verity release that matches it, "+
			"or first run this release's `verity migrate` on it (see docs/scaling.md on upgrades)", what)
	case errors.As(err, &newer):
		return fmt.Errorf("%s has a newer schema (version %d) than this release's (%d): use the verity release that matches it "+
			"(see docs/scaling.md on upgrades)", what, newer.Version, newer.Known)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
