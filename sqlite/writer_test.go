package sqlite_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
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
// Pairs of concurrent starts share a PIN id: exactly one of each pair must
// fail with a conflict, its user left without a PIN, and every other start
// stored.
func TestGroupCommitIsolatesFailedStarts(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	svc := mustService(t, db)
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
	pinIDs := make([]string, n/2)
	for i := range pinIDs {
		pinIDs[i] = uuid.NewString()
	}
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
			p.PIN.ID, p.PIN.Hash = pinIDs[i/2], []byte{byte(i)}
			st, err := db.StartPIN(ctx, p)
			errs[i], started[i] = err, st.Started
		}()
	}
	close(start)
	wg.Wait()

	conflicts := 0
	for i, u := range users {
		_, pin, err := db.UserWithPIN(ctx, svc.ID, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch verity.ErrorCode(errs[i]) {
		case "":
			if !started[i] || pin == nil || pin.ID != pinIDs[i/2] || pin.Hash[0] != byte(i) {
				t.Fatalf("start %d succeeded (started %v) but the user's PIN is %+v", i, started[i], pin)
			}
		case verity.ECONFLICT:
			conflicts++
			if pin != nil {
				t.Fatalf("start %d failed but left the user a PIN: %+v", i, pin)
			}
		default:
			t.Fatalf("start %d: %v", i, errs[i])
		}
	}
	if conflicts != n/2 {
		t.Fatalf("%d starts failed, want %d", conflicts, n/2)
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
