package storeopen_test

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"
	"github.com/verityhq/verity/internal/pgtest"
	"github.com/verityhq/verity/internal/storeopen"
	"github.com/verityhq/verity/postgres"
)

// TestOpenAsIs: opening a database as it is (the source of `verity store
// copy`) used to create a missing SQLite file and migrate any database.
// Now it creates nothing and changes no schema.
func TestOpenAsIs(t *testing.T) {
	ctx := context.Background()
	asIs := storeopen.Options{Mode: storeopen.AsIs}

	t.Run("a SQLite file that does not exist is refused by name, and not created", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "typo.db")
		db, err := storeopen.OpenWith(ctx, path, asIs)
		if err == nil {
			db.Close()
			t.Fatal("OpenWith succeeded, want the missing file refused")
		}
		if want := "no SQLite database at " + path; err.Error() != want {
			t.Fatalf("OpenWith = %q, want %q", err, want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("the folder holds %d files after the refusal, want none", len(entries))
		}
	})

	t.Run("a SQLite database of an older schema is refused, saying what to do, and left at its version", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "old.db")
		older := sqliteAtPreviousSchema(t, path)
		db, err := storeopen.OpenWith(ctx, path, asIs)
		if err == nil {
			db.Close()
			t.Fatal("OpenWith succeeded on an older schema, want it refused")
		}
		for _, want := range []string{path, "older schema", "release that matches it", "`verity migrate`"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("OpenWith = %q, want it to say %q", err, want)
			}
		}
		t.Logf("OpenWith = %v", err)
		if got := sqliteVersion(t, path); got != older {
			t.Fatalf("schema version after the refusal = %d, want %d, as it was", got, older)
		}
	})

	t.Run("a SQLite file without Verity's schema is refused and gets none", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil { // an empty file is an empty database
			t.Fatal(err)
		}
		db, err := storeopen.OpenWith(ctx, path, asIs)
		if err == nil {
			db.Close()
			t.Fatal("OpenWith succeeded, want a database without Verity's schema refused")
		}
		if want := "database " + path + " holds no Verity schema"; !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("OpenWith = %q, want it to start %q", err, want)
		}
		if tables := sqliteTables(t, path); len(tables) != 0 {
			t.Fatalf("the refused database now has tables %v, want none", tables)
		}
	})

	t.Run("a SQLite database of this release's schema opens", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "current.db")
		db, err := storeopen.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		if db, err = storeopen.OpenWith(ctx, path, asIs); err != nil {
			t.Fatalf("OpenWith = %v, want the current schema opened", err)
		}
		if err := db.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
	})

	t.Run("a PostgreSQL database without Verity's schema is refused and gets none", func(t *testing.T) {
		pgURL := throwawayPostgres(t)
		db, err := storeopen.OpenWith(ctx, pgURL, asIs)
		if err == nil {
			db.Close()
			t.Fatal("OpenWith succeeded, want a database without Verity's schema refused")
		}
		if want := "the PostgreSQL database holds no Verity schema"; !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("OpenWith = %q, want it to start %q", err, want)
		}
		if tables := pgtest.Tables(t, pgURL); tables != 0 {
			t.Fatalf("the refused database now has %d tables, want none", tables)
		}
	})
}

// sqliteAtPreviousSchema creates a SQLite database at path migrated to the
// version before this binary's, as an older release left it, and returns
// that version.
func sqliteAtPreviousSchema(t *testing.T, path string) int64 {
	t.Helper()
	ctx := context.Background()
	db := openSQL(t, path)
	p, err := goose.NewProvider(goose.DialectSQLite3, db, os.DirFS("../../sqlite/migrations"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	sources := p.ListSources()
	if len(sources) < 2 {
		t.Fatalf("%d SQLite migrations, want at least 2", len(sources))
	}
	previous := sources[len(sources)-2].Version
	if _, err := p.UpTo(ctx, previous); err != nil {
		t.Fatal(err)
	}
	return previous
}

// sqliteVersion returns the schema version of the SQLite database at path.
func sqliteVersion(t *testing.T, path string) int64 {
	t.Helper()
	var v int64
	if err := openSQL(t, path).QueryRow(`SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// sqliteTables lists the tables of the SQLite database at path.
func sqliteTables(t *testing.T, path string) []string {
	t.Helper()
	rows, err := openSQL(t, path).Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// openSQL opens the SQLite file at path through database/sql, closed when
// the test ends.
func openSQL(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// throwawayPostgres creates an empty database for one test and returns its
// URL; it is dropped at cleanup. The test is skipped without
// VERITY_TEST_POSTGRES_URL.
func throwawayPostgres(t *testing.T) string { return pgtest.NewDatabase(t, "verity_storeopen_") }

// TestIsPostgres: only lower-case postgres:// and postgresql:// URLs were
// PostgreSQL; any other way of writing one was taken for a SQLite file
// name, and a file of that name created.
func TestIsPostgres(t *testing.T) {
	for _, tc := range []struct {
		dsn  string
		want bool
	}{
		{"postgres://verity@db.internal/verity", true},
		{"postgresql://verity@db.internal/verity", true},
		{"POSTGRES://verity@db.internal/verity", true},
		{"PostgreSQL://verity@db.internal/verity", true},
		{"host=db.internal dbname=verity user=verity", true},
		{"dbname=verity", true},
		{"user=verity host=/var/run/postgresql", true},
		{"  host = db.internal  port = 5432", true},
		{"sslmode=verify-full host=db.internal", true},
		{"HOST=db.internal DBNAME=verity", true},
		{"verity-data/verity.db", false},
		{"/var/lib/verity/verity.db", false},
		{"verity.db", false},
		{"/data/host=a/verity.db", false},
		{"backups/2026-11-27=verity.db", false},
		{"postgres.db", false},
		{"sqlite://verity.db", false},
	} {
		if got := storeopen.IsPostgres(tc.dsn); got != tc.want {
			t.Errorf("IsPostgres(%q) = %v, want %v", tc.dsn, got, tc.want)
		}
	}
}

// TestOpenPostgresByAnyName opens PostgreSQL through a keyword/value string
// and a URL with an upper-case scheme, and creates no file.
func TestOpenPostgresByAnyName(t *testing.T) {
	pgURL := throwawayPostgres(t)
	dir := t.TempDir()
	t.Chdir(dir) // where a name taken for a SQLite file would be created
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	keyword := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable",
		u.Hostname(), cmp.Or(u.Port(), "5432"), u.User.Username(), strings.TrimPrefix(u.Path, "/"))
	for _, dsn := range []string{keyword, "POSTGRESQL" + strings.TrimPrefix(pgURL, "postgres")} {
		db, err := storeopen.Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("Open(%q) = %v", dsn, err)
		}
		db.Close()
		if _, ok := db.(*postgres.DB); !ok {
			t.Fatalf("Open(%q) opened a %T, want PostgreSQL", dsn, db)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("opening PostgreSQL created %d files in the working folder", len(entries))
	}
}

// TestOpenMustExist: the mode of the commands that work on an
// installation creates no SQLite file, and migrates one that exists.
func TestOpenMustExist(t *testing.T) {
	ctx := context.Background()
	mustExist := storeopen.Options{Mode: storeopen.MustExist}
	dir := t.TempDir()
	path := filepath.Join(dir, "verity.db")
	if db, err := storeopen.OpenWith(ctx, path, mustExist); !errors.Is(err, storeopen.ErrNoDatabase) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("OpenWith on a missing file = %v, want ErrNoDatabase", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the folder holds %d files after the refusal, want none", len(entries))
	}
	older := sqliteAtPreviousSchema(t, path)
	db, err := storeopen.OpenWith(ctx, path, mustExist)
	if err != nil {
		t.Fatalf("OpenWith on an existing database = %v", err)
	}
	db.Close()
	if got := sqliteVersion(t, path); got <= older {
		t.Fatalf("schema version %d after OpenWith, want it migrated past %d", got, older)
	}
}
