package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
	"github.com/verityhq/verity/storetest"
)

// TestGroupCommitIsolatesWrites sends many writes at once so that they share
// commits, half of them doomed to fail, and checks that every write got its
// own outcome and that exactly the good ones are stored.
func TestGroupCommitIsolatesWrites(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	svc := mustService(t, db)

	const n = 400
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Even i: a fresh user. Odd i: the same id_in_service as i-1, so
			// exactly one of each pair must fail with a conflict.
			u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: "user" + strconv.Itoa(i/2),
				Phone: "+3725555555", CreatedAt: time.Now()}
			errs[i] = db.CreateUser(ctx, u)
		}()
	}
	close(start)
	wg.Wait()

	conflicts := 0
	for i, err := range errs {
		switch verity.ErrorCode(err) {
		case "":
		case verity.ECONFLICT:
			conflicts++
		default:
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_, total, err := db.ListUsers(ctx, svc.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != n/2 || total != n/2 {
		t.Fatalf("%d conflicts and %d users stored, want %d and %d", conflicts, total, n/2, n/2)
	}
}

// TestGroupCommitIsolatesFailedStarts: a first start runs its one INSERT
// without a savepoint, so a failing INSERT must be undone by SQLite alone,
// leaving the batch's other writes, and its transaction, as they were.
// A trigger refuses the PINs with a two-byte hash once they are written (the
// row and its index entries are in the file's pages, and SQLite's statement
// rollback takes them out again), which every second of many concurrent
// starts has: each of those must fail with a conflict, its
// user left without a PIN, and every other start stored.
func TestGroupCommitIsolatesFailedStarts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "verity.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc := mustService(t, db)
	// Through a connection of its own: the store's writer sees the schema
	// change at its next statement.
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Exec(`CREATE TRIGGER refuse_two_byte_hashes AFTER INSERT ON pins
		WHEN length(NEW.hash) = 2 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
	if err := errors.Join(err, other.Close()); err != nil {
		t.Fatal(err)
	}
	const n = 400
	users := make([]*verity.User, n)
	for i := range users {
		users[i] = &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: "user" + strconv.Itoa(i),
			Phone: "+3725555555", CreatedAt: time.Now()}
		if err := db.CreateUser(ctx, users[i]); err != nil {
			t.Fatal(err)
		}
	}

	now := time.Now()
	refused := func(i int) bool { return i%2 == 1 }
	var wg sync.WaitGroup
	errs := make([]error, n)
	started := make([]bool, n)
	start := make(chan struct{})
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p := storetest.StartAt(u, now)
			p.PIN.Hash = []byte{byte(i)}
			if refused(i) {
				p.PIN.Hash = append(p.PIN.Hash, 0)
			}
			st, err := db.StartPIN(ctx, p)
			errs[i], started[i] = err, st.Started
		}()
	}
	close(start)
	wg.Wait()

	for i, u := range users {
		_, pin, err := db.UserWithPIN(ctx, svc.ID, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch code := verity.ErrorCode(errs[i]); {
		case !refused(i) && errs[i] == nil:
			if !started[i] || pin == nil || len(pin.Hash) != 1 || pin.Hash[0] != byte(i) {
				t.Fatalf("start %d succeeded (started %v) but the user's PIN is %+v", i, started[i], pin)
			}
		case refused(i) && code == verity.ECONFLICT:
			if pin != nil {
				t.Fatalf("start %d failed but left the user a PIN: %+v", i, pin)
			}
		default:
			t.Fatalf("start %d (refused by the trigger: %v): %v", i, refused(i), errs[i])
		}
	}
}

// mustService stores an account and a service with the default settings.
func mustService(t *testing.T, db verity.Store) *verity.Service {
	t.Helper()
	ctx := context.Background()
	acct := &verity.Account{ID: uuid.NewString(), Username: "acme", SecretHash: []byte{1}, CreatedAt: time.Now()}
	if err := db.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "S", FQDN: "s", Settings: verity.DefaultSettings(), CreatedAt: time.Now()}
	if err := db.CreateService(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}
