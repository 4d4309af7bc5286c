package postgres_test

import (
	"context"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/storetest"
)

// bouncerURL returns VERITY_TEST_PGBOUNCER_URL, a PgBouncer in transaction
// pooling mode in front of VERITY_TEST_POSTGRES_URL's server that routes
// any database name to it (databases: * = host=… port=…), and skips tb
// without it.
func bouncerURL(tb testing.TB) string {
	tb.Helper()
	testURL(tb)
	u := os.Getenv("VERITY_TEST_PGBOUNCER_URL")
	if u == "" {
		tb.Skip("VERITY_TEST_PGBOUNCER_URL not set: tests through PgBouncer skipped")
	}
	return u
}

// throughBouncer returns the URL of direct's database by way of bouncer.
func throughBouncer(tb testing.TB, bouncer, direct string) string {
	tb.Helper()
	b, err := url.Parse(bouncer)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := url.Parse(direct)
	if err != nil {
		tb.Fatal(err)
	}
	b.Path = d.Path
	return b.String()
}

// TestStoreBehindPgBouncer runs the conformance suite, migrations
// included, through PgBouncer in transaction mode in the query modes the
// package documentation recommends for it.
func TestStoreBehindPgBouncer(t *testing.T) {
	bouncer := bouncerURL(t)
	for _, mode := range []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"cached descriptions", pgx.QueryExecModeCacheDescribe},
		{"exec", pgx.QueryExecModeExec},
		{"simple protocol", pgx.QueryExecModeSimpleProtocol},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel() // separate databases
			storetest.Run(t, func(t *testing.T) verity.Store {
				db := mustOpen(t, throughBouncer(t, bouncer, createDatabase(t, true)), postgres.Options{QueryExecMode: mode.mode})
				if err := db.Migrate(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := db.Warm(context.Background()); err != nil {
					t.Fatal(err)
				}
				return db
			})
		})
	}
	t.Run("five nodes migrating at once through PgBouncer apply each migration once", func(t *testing.T) {
		url := createDatabase(t, false)
		migrateConcurrently(t, url, throughBouncer(t, bouncer, url), postgres.Options{QueryExecMode: pgx.QueryExecModeCacheDescribe})
	})
}
