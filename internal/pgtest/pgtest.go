// Package pgtest gives tests throwaway PostgreSQL databases on the server
// that VERITY_TEST_POSTGRES_URL names.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// NewDatabase creates an empty database named prefix and a random suffix,
// drops it when tb ends, and returns its URL. It skips tb when
// VERITY_TEST_POSTGRES_URL is not set, saying so.
func NewDatabase(tb testing.TB, prefix string) string {
	tb.Helper()
	base := os.Getenv("VERITY_TEST_POSTGRES_URL")
	if base == "" {
		tb.Skip("VERITY_TEST_POSTGRES_URL not set: PostgreSQL tests skipped")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil { // a generated name: nothing to quote
		conn.Close(ctx)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Tables returns how many tables the database at dbURL holds in its
// current schema: none, for a database a command must have left alone.
func Tables(tb testing.TB, dbURL string) int {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
