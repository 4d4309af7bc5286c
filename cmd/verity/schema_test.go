package main_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql's "pgx", for goose
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // database/sql's "sqlite", for goose
)

// adminCommands are the commands that work on an installation without
// migrating it: all but serve and migrate.
var adminCommands = [][]string{
	{"account", "create", "beta"},
	{"account", "list"},
	{"account", "delete", "acme"},
	{"keys", "rotate"},
	{"keys", "reencrypt"},
}

// TestAdminCommandsLeaveTheSchemaAlone: account create|list|delete and keys
// rotate|reencrypt used to migrate the database they opened, so that a
// newer release's command changed the schema under an older release's
// server still using it (and took away a rolling upgrade's rollback).
// They now refuse a schema older or newer than theirs, in one line saying
// what to do, and leave it as it was; a new installation is still created
// with its schema.
func TestAdminCommandsLeaveTheSchemaAlone(t *testing.T) {
	// refused runs args in dir and checks that it exits 1 with one line
	// that says each of wants.
	refused := func(t *testing.T, dir string, args []string, wants ...string) {
		t.Helper()
		_, stderr, err := runVerity(t, dir, args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("%s = %v, want exit status 1; stderr:\n%s", args, err, stderr)
		}
		line := strings.TrimSpace(stderr)
		if strings.Contains(line, "\n") {
			t.Fatalf("%s: stderr %q, want one line", args, stderr)
		}
		for _, want := range wants {
			if !strings.Contains(line, want) {
				t.Fatalf("%s: stderr %q, want it to say %q", args, line, want)
			}
		}
	}

	t.Run("a SQLite database of an older release is refused, saying to migrate or use that release, and keeps its schema", func(t *testing.T) {
		dir := t.TempDir()
		createAccount(t, dir, "acme") // the keys and keyring
		path := filepath.Join(dir, "old.db")
		older := atPreviousSchema(t, goose.DialectSQLite3, "sqlite", path, "../../sqlite/migrations")
		for _, args := range adminCommands {
			refused(t, dir, append(args, "--db", path),
				"database "+path+" has an older schema than this release's", "release that matches it", "`verity migrate`")
			if got := schemaVersion(t, "sqlite", path); got != older {
				t.Fatalf("%s: schema version %d after the refusal, want %d, as it was", args, got, older)
			}
		}
	})

	t.Run("a SQLite database of a newer release is refused, saying to use that release, and keeps its schema", func(t *testing.T) {
		dir := t.TempDir()
		createAccount(t, dir, "acme")
		path := filepath.Join(dir, "verity-data", "verity.db")
		current := schemaVersion(t, "sqlite", path)
		db := openSQL(t, "sqlite", path)
		if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)`, current+1); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for _, args := range adminCommands {
			refused(t, dir, args, "database verity-data/verity.db has a newer schema", "release that matches it")
			if got := schemaVersion(t, "sqlite", path); got != current+1 {
				t.Fatalf("%s: schema version %d after the refusal, want %d, as it was", args, got, current+1)
			}
		}
	})

	t.Run("a PostgreSQL database of an older release is refused and keeps its schema", func(t *testing.T) {
		pgURL := throwawayPostgres(t)
		dir := t.TempDir()
		createAccount(t, dir, "acme")
		// Before its first migration: PostgreSQL has a single one so far.
		older := atSchema(t, goose.DialectPostgres, "pgx", pgURL, "../../postgres/migrations", 0)
		for _, args := range adminCommands {
			refused(t, dir, append(args, "--db", pgURL),
				"the PostgreSQL database has an older schema than this release's", "`verity migrate`")
			if got := schemaVersion(t, "pgx", pgURL); got != older {
				t.Fatalf("%s: schema version %d after the refusal, want %d, as it was", args, got, older)
			}
		}
	})

	t.Run("an existing database without Verity's schema is refused by list, delete and keys, and gets no tables", func(t *testing.T) {
		// A mistyped --db naming another application's database (or an
		// empty one) used to be given Verity's tables by any of them.
		tables := func(t *testing.T, driver, dsn, query string) int {
			t.Helper()
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(query).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		dir := t.TempDir()
		createAccount(t, dir, "acme") // the seed keyring the keys commands need
		empty := filepath.Join(dir, "empty.db")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		targets := []struct{ name, driver, dsn, query string }{
			{"an empty SQLite file", "sqlite", empty, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"},
		}
		if os.Getenv("VERITY_TEST_POSTGRES_URL") != "" {
			targets = append(targets, struct{ name, driver, dsn, query string }{"an empty PostgreSQL database", "pgx", throwawayPostgres(t),
				"SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"})
		} else {
			t.Log("VERITY_TEST_POSTGRES_URL not set: the PostgreSQL case is skipped")
		}
		for _, target := range targets {
			for _, args := range adminCommands[1:] { // all but account create, which starts an installation
				refused(t, dir, append(args, "--db", target.dsn), "holds no Verity schema")
			}
			if n := tables(t, target.driver, target.dsn, target.query); n != 0 {
				t.Fatalf("%s: %d tables after the refusals, want none", target.name, n)
			}
		}
	})

	t.Run("account create gives an empty PostgreSQL database its schema, and the others then work on it", func(t *testing.T) {
		pgURL := throwawayPostgres(t)
		dir := t.TempDir()
		createAccount(t, dir, "acme", "--db", pgURL)
		for _, args := range adminCommands {
			if _, stderr, err := runVerity(t, dir, append(args, "--db", pgURL)...); err != nil {
				t.Fatalf("%s: %v\n%s", args, err, stderr)
			}
		}
	})
}

// atPreviousSchema creates the database dsn names at the schema version
// before the newest of the migrations in dir, as an older release left it,
// and returns that version.
func atPreviousSchema(t *testing.T, dialect goose.Dialect, driver, dsn, dir string) int64 {
	t.Helper()
	p := migrations(t, dialect, driver, dsn, dir)
	sources := p.ListSources()
	p.Close()
	if len(sources) < 2 {
		t.Fatalf("%d migrations in %s, want at least 2", len(sources), dir)
	}
	return atSchema(t, dialect, driver, dsn, dir, sources[len(sources)-2].Version)
}

// atSchema migrates the database dsn names to version (0: only goose's
// version table) with the migrations in dir and returns version.
func atSchema(t *testing.T, dialect goose.Dialect, driver, dsn, dir string, version int64) int64 {
	t.Helper()
	p := migrations(t, dialect, driver, dsn, dir)
	defer p.Close()
	ctx := context.Background()
	if version == 0 {
		if _, err := p.GetDBVersion(ctx); err != nil { // creates the version table
			t.Fatal(err)
		}
	} else if _, err := p.UpTo(ctx, version); err != nil {
		t.Fatal(err)
	}
	if got := schemaVersion(t, driver, dsn); got != version {
		t.Fatalf("schema version %d, want %d", got, version)
	}
	return version
}

// migrations returns a goose provider of the migrations in dir on the
// database dsn names.
func migrations(t *testing.T, dialect goose.Dialect, driver, dsn, dir string) *goose.Provider {
	t.Helper()
	p, err := goose.NewProvider(dialect, openSQL(t, driver, dsn), os.DirFS(dir), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// schemaVersion returns the schema version of the database dsn names.
func schemaVersion(t *testing.T, driver, dsn string) int64 {
	t.Helper()
	db := openSQL(t, driver, dsn)
	defer db.Close()
	var v int64
	if err := db.QueryRow(`SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// openSQL opens the database dsn names through database/sql, closed when
// the test ends at the latest.
func openSQL(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
