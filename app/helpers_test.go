package app_test

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/secretbox"
	"github.com/verityhq/verity/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// outbox records messages instead of sending them.
type outbox struct {
	mu   sync.Mutex
	msgs []verity.Message
}

func (o *outbox) Send(_ context.Context, m verity.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, m)
	return nil
}

func (o *outbox) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

type env struct {
	app     *app.App
	keys    *app.Keys
	db      verity.Store
	dbPath  string // the SQLite file; empty on PostgreSQL
	seeds   *secretbox.FileKeyring
	clock   *clock
	outbox  *outbox
	account *verity.Account
	service *verity.Service
}

// newEnv builds an App on a real SQLite file with a real seed keyring, one
// account and one service.
func newEnv(t *testing.T) *env {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "verity.db")
	db, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, db)
	e.dbPath = dbPath
	return e
}

// newPostgresEnv is newEnv on a new PostgreSQL database, dropped when t
// ends; it skips t unless VERITY_TEST_POSTGRES_URL names a server.
func newPostgresEnv(t *testing.T) *env {
	t.Helper()
	base := os.Getenv("VERITY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("VERITY_TEST_POSTGRES_URL not set: PostgreSQL skipped")
	}
	ctx := context.Background()
	name := "verity_app_test_" + strings.ToLower(rand.Text()[:12])
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil { // a generated name: nothing to quote
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err := postgres.Open(ctx, u.String(), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // runs before the drop
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, db)
}

// newEnvOn builds an App on db with a real seed keyring, one account and
// one service.
func newEnvOn(t *testing.T, db verity.Store) *env {
	t.Helper()
	e := &env{clock: &clock{now: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)}, outbox: &outbox{}}
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := app.NewKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	if e.seeds, err = secretbox.OpenFileKeyring(filepath.Join(t.TempDir(), "seed-keys.json"), true); err != nil {
		t.Fatal(err)
	}
	e.db, e.keys = db, keys
	e.app = app.New(db, e.outbox, keys, nil)
	e.app.Seeds = e.seeds
	e.app.Now = e.clock.Now
	ctx := context.Background()
	if e.account, _, err = e.app.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if e.service, err = e.app.CreateService(ctx, e.account, "Acme", "acme.example"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) newUser(t *testing.T, name string) *verity.User {
	t.Helper()
	u, err := e.app.CreateUser(context.Background(), e.account, e.service.ID, name, "+3725555555")
	if err != nil {
		t.Fatal(err)
	}
	return u
}
