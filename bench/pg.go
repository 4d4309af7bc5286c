package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgAdmin creates and drops the benchmark's throwaway databases through
// the maintenance database the -postgres-url names.
type pgAdmin struct {
	url    string
	prefix string // verity_bench_<random>

	mu      sync.Mutex
	created []string
}

// newPGAdmin checks that the maintenance database answers.
func newPGAdmin(ctx context.Context, maintenanceURL string) (*pgAdmin, error) {
	a := &pgAdmin{url: maintenanceURL, prefix: "verity_bench_" + randomToken(8)}
	return a, a.exec(ctx, "SELECT 1")
}

func (a *pgAdmin) exec(ctx context.Context, sql string) error {
	return execDB(ctx, a.url, sql)
}

// execDB runs statements one by one, each on its own (no transaction
// around them, so VACUUM works), on one connection to dbURL.
func execDB(ctx context.Context, dbURL string, statements ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.Background())
	for _, sql := range statements {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("postgres: %s: %w", sql, err)
		}
	}
	return nil
}

// create makes an empty database (or a copy of template, when given) and
// returns its URL.
func (a *pgAdmin) create(ctx context.Context, suffix, template string) (string, error) {
	name := a.prefix + "_" + suffix
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if err := a.exec(ctx, sql); err != nil {
		return "", err
	}
	a.mu.Lock()
	a.created = append(a.created, name)
	a.mu.Unlock()
	return a.dbURL(name)
}

// dbURL is the maintenance URL with its database replaced by name.
func (a *pgAdmin) dbURL(name string) (string, error) {
	u, err := url.Parse(a.url)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// withPool sets the size of the connection pool a Verity store opens on
// dbURL (pool_max_conns); n 0 leaves the store's default. Only Verity reads
// the parameter: pgbench's libpq would refuse it.
func withPool(dbURL string, n int) string {
	if n <= 0 {
		return dbURL
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}

// dbName returns the database a URL made by create names.
func dbName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// dropAll drops every database this run created, even with connections
// still open (PostgreSQL 13+).
func (a *pgAdmin) dropAll(ctx context.Context) error {
	a.mu.Lock()
	names := a.created
	a.created = nil
	a.mu.Unlock()
	var first error
	for _, name := range names {
		if err := a.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil && first == nil {
			first = err
		}
	}
	return first
}
