package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/storetest"
)

// testURL returns the server the tests use, from VERITY_TEST_POSTGRES_URL,
// and skips tb without it.
func testURL(tb testing.TB) string {
	tb.Helper()
	s := os.Getenv("VERITY_TEST_POSTGRES_URL")
	if s == "" {
		tb.Skip("VERITY_TEST_POSTGRES_URL not set: PostgreSQL store tests skipped")
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("VERITY_TEST_POSTGRES_URL must be a postgres:// URL")
	}
	return s
}

// TestMain drops the template database the tests copied, if one was made.
func TestMain(m *testing.M) {
	code := m.Run()
	if template.name != "" {
		if err := dropDatabase(os.Getenv("VERITY_TEST_POSTGRES_URL"), template.name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// template is a database migrated once per run; the stores of the tests
// start as copies of it, which is faster than migrating each.
var template struct {
	once sync.Once
	name string
	err  error
}

// createDatabase creates an empty database on the test server, dropped when
// tb ends, and returns its URL. A database per store keeps tests isolated
// exactly as separate installations are: nothing shared but the server.
// With migrated, the database is a copy of the migrated template.
func createDatabase(tb testing.TB, migrated bool) string {
	tb.Helper()
	base := testURL(tb)
	from := "template0"
	if migrated {
		template.once.Do(func() { template.name, template.err = makeTemplate(base) })
		if template.err != nil {
			tb.Fatalf("migrated template database: %v", template.err)
		}
		from = template.name
	}
	name, err := newDatabase(base, from)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := dropDatabase(base, name); err != nil {
			tb.Error(err)
		}
	})
	return databaseURL(base, name)
}

// makeTemplate creates and migrates the template database.
func makeTemplate(base string) (string, error) {
	ctx := context.Background()
	name, err := newDatabase(base, "template0")
	if err != nil {
		return "", err
	}
	db, err := postgres.Open(ctx, databaseURL(base, name), postgres.Options{})
	if err == nil {
		err = db.Migrate(ctx)
		db.Close() // a template must have no connections while it is copied
	}
	if err != nil {
		dropDatabase(base, name)
		return "", err
	}
	return name, nil
}

// newDatabase creates a database with a random name as a copy of from.
func newDatabase(base, from string) (string, error) {
	ctx := context.Background()
	b := make([]byte, 8)
	rand.Read(b)
	name := "verity_test_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("connect to the test server: %w", err)
	}
	defer admin.Close(ctx)
	// Both names are generated: nothing to quote.
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+from); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	return name, nil
}

func dropDatabase(base, name string) error {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return fmt.Errorf("connect to the test server: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop test database %s: %w", name, err)
	}
	return nil
}

// databaseURL is base with its database replaced by name.
func databaseURL(base, name string) string {
	u, _ := url.Parse(base) // checked by testURL
	u.Path = "/" + name
	return u.String()
}

func mustConnect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatalf("connect to the test server: %v", err)
	}
	return conn
}

// mustOpen opens a store on url without migrating it; it is closed when tb ends.
func mustOpen(tb testing.TB, url string, opts postgres.Options) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), url, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustOpenDB opens a migrated store on a new empty database, with every
// connection of its pool open so that concurrent calls really overlap.
// Migrate runs too, and finds nothing to do.
func MustOpenDB(tb testing.TB, opts postgres.Options) *postgres.DB {
	tb.Helper()
	db := mustOpen(tb, createDatabase(tb, true), opts)
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := db.Warm(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return db
}

// TestStore runs the conformance suite in the query modes a deployment
// may choose: pgx's default of named prepared statements for direct
// connections, and the modes that work behind PgBouncer in transaction mode.
func TestStore(t *testing.T) {
	testURL(t)
	for _, mode := range []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"cached statements", 0},
		{"cached descriptions for PgBouncer", pgx.QueryExecModeCacheDescribe},
		{"simple protocol", pgx.QueryExecModeSimpleProtocol},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel() // separate databases; most of the time is spent creating them
			storetest.Run(t, func(t *testing.T) verity.Store {
				return MustOpenDB(t, postgres.Options{QueryExecMode: mode.mode})
			})
		})
	}
}
