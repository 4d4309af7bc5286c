package sqlite_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// TestGroupCommitIsolatesWrites sends many writes at once so that they share
// commits, half of them doomed to fail, and checks that every write got its
// own outcome and that exactly the good ones are stored.
func TestGroupCommitIsolatesWrites(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	acct := &verity.Account{ID: uuid.NewString(), Username: "acme", SecretHash: []byte{1}, CreatedAt: time.Now()}
	if err := db.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "S", FQDN: "s", Settings: verity.DefaultSettings(), CreatedAt: time.Now()}
	if err := db.CreateService(ctx, svc); err != nil {
		t.Fatal(err)
	}

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
