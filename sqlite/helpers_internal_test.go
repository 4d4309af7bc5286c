package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
	"github.com/verityhq/verity"
)

// openWithUser opens a migrated store in a temporary folder, closed when the
// test ends, holding one account, one service and one user created at now.
func openWithUser(t *testing.T, now time.Time) (*DB, *verity.Service, *verity.User) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	acct := &verity.Account{ID: uuid.NewString(), Username: "acme", SecretHash: []byte{1}, CreatedAt: now}
	svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "Acme", FQDN: "acme.example.com",
		Settings: verity.DefaultSettings(), CreatedAt: now}
	u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: "alice", Phone: "+3725555555",
		PhoneType: "MOBILE", CreatedAt: now}
	for _, err := range []error{db.CreateAccount(ctx, acct), db.CreateService(ctx, svc), db.CreateUser(ctx, u)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return db, svc, u
}

// openAtSchema opens a store in a temporary folder, closed when the test
// ends, migrated up to schema version only, and its migrator: for tests of
// the migrations after it.
func openAtSchema(t *testing.T, version int64) (*DB, *goose.Provider) {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := db.migrator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return db, p
}

// activateApp gives u an active authenticator app whose last step is 5.
func activateApp(t *testing.T, db *DB, u *verity.User, now time.Time) *verity.Factor {
	t.Helper()
	ctx := context.Background()
	f := &verity.Factor{ID: uuid.NewString(), UserID: u.ID, Status: verity.FactorPending, KeyID: "k1",
		Secret: []byte("sealed"), Algorithm: "SHA1", Digits: 6, Period: 30, CreatedAt: now}
	if err := db.PutPendingFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.ActivateFactor(ctx, verity.FactorActivation{FactorID: f.ID, UserID: u.ID, Step: 5, Now: now}); err != nil || !ok {
		t.Fatalf("ActivateFactor = %v, %v", ok, err)
	}
	return f
}
