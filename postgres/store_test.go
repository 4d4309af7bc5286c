package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)

type fixture struct {
	db      *postgres.DB
	url     string
	account *verity.Account
	service *verity.Service
	user    *verity.User
}

// newFixture opens a migrated store holding one account, service and user.
func newFixture(tb testing.TB, opts postgres.Options) *fixture {
	tb.Helper()
	ctx := context.Background()
	url := createDatabase(tb, true)
	db := mustOpen(tb, url, opts)
	if err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	f := &fixture{db: db, url: url}
	f.account = &verity.Account{ID: "a1", Username: "acme", SecretHash: []byte{1}, CreatedAt: t0}
	f.service = &verity.Service{ID: "s1", AccountID: "a1", Name: "Acme", FQDN: "acme.example", Settings: verity.DefaultSettings(), CreatedAt: t0}
	f.user = &verity.User{ID: "u1", ServiceID: "s1", IDInService: "alice", Phone: "+3725555555", PhoneType: "MOBILE", CreatedAt: t0}
	for _, err := range []error{
		db.CreateAccount(ctx, f.account), db.CreateService(ctx, f.service), db.CreateUser(ctx, f.user),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return f
}

// start builds a PINStart at now that only the resend interval limits.
func start(u *verity.User, id string, now time.Time) verity.PINStart {
	return verity.PINStart{
		ServiceID:       u.ServiceID,
		PIN:             verity.PIN{ID: id, UserID: u.ID, Hash: []byte(id), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		SendWindowStart: now.Add(-time.Minute), MaxSends: 1 << 20, ResendNotBefore: now,
		FailureWindowStart: now.Add(-time.Hour), FailureLimit: 1 << 20,
	}
}

func TestErrorTranslation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	for _, c := range []struct {
		name     string
		err      error
		code     string
		sqlstate string // of the cause kept for the log
	}{
		{"a taken username is a unique violation, ECONFLICT",
			f.db.CreateAccount(ctx, &verity.Account{ID: "a2", Username: "acme", SecretHash: []byte{1}, CreatedAt: t0}),
			verity.ECONFLICT, "23505"},
		{"a service of an unknown account is a foreign-key violation, ECONFLICT",
			f.db.CreateService(ctx, &verity.Service{ID: "s2", AccountID: "nobody", Name: "X", FQDN: "x", Settings: verity.DefaultSettings(), CreatedAt: t0}),
			verity.ECONFLICT, "23503"},
		{"an account that still has services is a foreign-key violation, ECONFLICT",
			f.db.DeleteAccount(ctx, "acme"), verity.ECONFLICT, "23503"},
		{"a service that still has users is a foreign-key violation, ECONFLICT",
			f.db.DeleteService(ctx, "s1"), verity.ECONFLICT, "23503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := verity.ErrorCode(c.err); got != c.code {
				t.Fatalf("error code = %q (%v), want %q", got, c.err, c.code)
			}
			var pe *pgconn.PgError
			if !errors.As(c.err, &pe) || pe.Code != c.sqlstate {
				t.Fatalf("cause = %v, want SQLSTATE %s kept in the chain", c.err, c.sqlstate)
			}
		})
	}
	t.Run("no rows is ENOTFOUND, in a transaction too", func(t *testing.T) {
		_, err := f.db.AccountByUsername(ctx, "nobody")
		if got := verity.ErrorCode(err); got != verity.ENOTFOUND {
			t.Fatalf("AccountByUsername(unknown) code = %q (%v), want %q", got, err, verity.ENOTFOUND)
		}
		_, err = f.db.StartPIN(ctx, start(&verity.User{ID: "nobody", ServiceID: f.service.ID}, "p1", t0))
		if got := verity.ErrorCode(err); got != verity.ENOTFOUND {
			t.Fatalf("StartPIN(unknown user) code = %q (%v), want %q", got, err, verity.ENOTFOUND)
		}
	})
}

// PostgreSQL cannot hold invalid UTF-8 or NUL in text, which SQLite keeps;
// requests can carry both (a path segment %FF, a JSON "\u0000").
func TestTextPostgreSQLCannotHold(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	for what, bad := range map[string]string{"invalid UTF-8": "\xff", "a NUL": "a\x00b"} {
		t.Run("lookups by a key with "+what+" find nothing", func(t *testing.T) {
			if _, err := f.db.AccountByUsername(ctx, bad); verity.ErrorCode(err) != verity.ENOTFOUND {
				t.Errorf("AccountByUsername = %v, want ENOTFOUND", err)
			}
			if _, err := f.db.Service(ctx, bad); verity.ErrorCode(err) != verity.ENOTFOUND {
				t.Errorf("Service = %v, want ENOTFOUND", err)
			}
			if _, err := f.db.User(ctx, f.service.ID, bad); verity.ErrorCode(err) != verity.ENOTFOUND {
				t.Errorf("User = %v, want ENOTFOUND", err)
			}
			if ok, err := f.db.ConsumePIN(ctx, verity.PINConsume{PINID: bad, UserID: f.user.ID, Now: t0}); ok || err != nil {
				t.Errorf("ConsumePIN = %v, %v; want false, nil", ok, err)
			}
			if users, total, err := f.db.ListUsers(ctx, bad, 10); len(users) != 0 || total != 0 || err != nil {
				t.Errorf("ListUsers = %v, %d, %v; want none", users, total, err)
			}
		})
		t.Run("writing text with "+what+" is EINVALID", func(t *testing.T) {
			u := &verity.User{ID: "u-bad", ServiceID: f.service.ID, IDInService: bad, Phone: "+3725555555", CreatedAt: t0}
			if err := f.db.CreateUser(ctx, u); verity.ErrorCode(err) != verity.EINVALID {
				t.Errorf("CreateUser = %v, want EINVALID", err)
			}
		})
	}
	t.Run("a NUL in the settings round-trips", func(t *testing.T) {
		s := verity.DefaultSettings()
		s.MessageTemplate = "Code <PIN>\x00"
		if err := f.db.UpdateServiceSettings(ctx, f.service.ID, s); err != nil {
			t.Fatal(err)
		}
		got, err := f.db.Service(ctx, f.service.ID)
		if err != nil || got.Settings.MessageTemplate != s.MessageTemplate {
			t.Fatalf("Service = %+v, %v; want the template back", got, err)
		}
	})
}

func TestStatementTimeout(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{StatementTimeout: 200 * time.Millisecond, MaxConns: 1})
	// Another session holds the user's row, so StartPIN waits for its lock.
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, f.user.ID); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = f.db.StartPIN(ctx, start(f.user, "p1", t0))
	if got := verity.ErrorCode(err); got != verity.EUNAVAILABLE {
		t.Fatalf("StartPIN behind a held lock = %v (%s), want EUNAVAILABLE", err, got)
	}
	if waited := time.Since(began); waited > 2*time.Second {
		t.Fatalf("StartPIN returned after %v, want about the 200 ms statement timeout", waited)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The pool's one connection is usable again, outside any transaction.
	// (The timeout may have closed it: open its successor first, outside
	// the 200 ms bound, which a loaded machine's reconnect can exceed.)
	if err := f.db.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := f.db.StartPIN(ctx, start(f.user, "p2", t0)); err != nil || !st.Started {
		t.Fatalf("StartPIN after the timeout = %+v, %v", st, err)
	}
	if p, err := f.db.PendingPIN(ctx, f.user.ID); err != nil || p.ID != "p2" {
		t.Fatalf("PendingPIN = %+v, %v; want p2 (p1 rolled back)", p, err)
	}
}

// Starts (which lock the user, then delete old PINs), wrong tries (user,
// then PIN) and consumes (user, then PIN) on one user at once: none may fail, and
// the user's failure count must equal the tries counted.
func TestMixedOperationsOnOneUser(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	if st, err := f.db.StartPIN(ctx, start(f.user, "p0", t0)); err != nil || !st.Started {
		t.Fatalf("StartPIN = %+v, %v", st, err)
	}
	var counted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Go(func() {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			switch i % 3 {
			case 0:
				s := start(f.user, fmt.Sprintf("start-%d", i), now)
				s.SendWindowStart = now // every start prunes all older PINs
				s.ResendNotBefore = now.Add(time.Hour)
				if _, err := f.db.StartPIN(ctx, s); err != nil {
					errs <- err
				}
			case 1:
				p, err := f.db.PendingPIN(ctx, f.user.ID)
				if err != nil {
					errs <- err
					return
				}
				ok, err := f.db.CountFailedTry(ctx, verity.FailedTry{PINID: p.ID, UserID: f.user.ID, Now: t0,
					MaxAttempts: 1 << 20, FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 1 << 20})
				if err != nil {
					errs <- err
				}
				if ok {
					counted.Add(1)
				}
			case 2:
				p, err := f.db.PendingPIN(ctx, f.user.ID)
				if err != nil {
					errs <- err
					return
				}
				if _, err := f.db.ConsumePIN(ctx, verity.PINConsume{PINID: p.ID, UserID: f.user.ID, Now: t0,
					MaxAttempts: 1 << 20, FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 1 << 20}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	u, err := f.db.User(ctx, f.service.ID, f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	if int64(u.FailureCount) != counted.Load() {
		t.Fatalf("user failures = %d, want the %d tries counted", u.FailureCount, counted.Load())
	}
}
