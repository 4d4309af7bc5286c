// Package storetest is the behaviour every verity.Store must have, written
// once and run against each backend: storetest.Run(t, open).
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// Open returns a new, empty, migrated store; the suite closes it.
type Open func(t *testing.T) verity.Store

// Run runs the whole conformance suite against the stores open returns.
func Run(t *testing.T, open Open) {
	t.Run("accounts", func(t *testing.T) { testAccounts(t, open) })
	t.Run("services", func(t *testing.T) { testServices(t, open) })
	t.Run("users", func(t *testing.T) { testUsers(t, open) })
	t.Run("pins", func(t *testing.T) { testPINs(t, open) })
	t.Run("pin concurrency", func(t *testing.T) { testPINConcurrency(t, open) })
	t.Run("checks by the code's hash", func(t *testing.T) { testCodeHashChecks(t, open) })
	t.Run("factors", func(t *testing.T) { testFactors(t, open) })
	t.Run("factors in checks", func(t *testing.T) { testFactorsInChecks(t, open) })
	t.Run("factor concurrency", func(t *testing.T) { testFactorConcurrency(t, open) })
	t.Run("copy", func(t *testing.T) { testCopy(t, open) })
}

// t0 is the suite's fixed "now": stores take times from their callers, so
// nothing here depends on the wall clock.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC)

type fixture struct {
	store   verity.Store
	account *verity.Account
	service *verity.Service
	user    *verity.User
}

func openStore(t *testing.T, open Open) verity.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

// newFixture opens a store holding one account, one service and one user.
func newFixture(t *testing.T, open Open) *fixture {
	t.Helper()
	f := &fixture{store: openStore(t, open)}
	f.account = mustAccount(t, f.store, "acme")
	f.service = mustService(t, f.store, f.account, "Acme")
	f.user = mustUser(t, f.store, f.service, "alice")
	return f
}

func mustAccount(t *testing.T, s verity.Store, username string) *verity.Account {
	t.Helper()
	a := &verity.Account{ID: uuid.NewString(), Username: username, SecretHash: randomBytes(32), CreatedAt: t0}
	if err := s.CreateAccount(context.Background(), a); err != nil {
		t.Fatalf("CreateAccount(%q) = %v", username, err)
	}
	return a
}

func mustService(t *testing.T, s verity.Store, a *verity.Account, name string) *verity.Service {
	t.Helper()
	svc := &verity.Service{ID: uuid.NewString(), AccountID: a.ID, Name: name, FQDN: "example.com",
		Settings: verity.DefaultSettings(), CreatedAt: t0}
	if err := s.CreateService(context.Background(), svc); err != nil {
		t.Fatalf("CreateService(%q) = %v", name, err)
	}
	return svc
}

func mustUser(t *testing.T, s verity.Store, svc *verity.Service, idInService string) *verity.User {
	t.Helper()
	u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: idInService,
		Phone: "+3725555555", PhoneType: "UNKNOWN", CreatedAt: t0}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%q) = %v", idInService, err)
	}
	return u
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := verity.ErrorCode(err); got != code {
		t.Fatalf("%s: error code = %q (%v), want %q", what, got, err, code)
	}
}

// parallel runs fn n times at once, released together, and counts true results.
func parallel(t *testing.T, n int, fn func(i int) (bool, error)) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		errs  []error
		start = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := fn(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("call %d: %w", i, err))
			}
			if ok {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	return wins
}

// judgeGate widens the race between a store's read and its write: each
// judge waits until n judges have been called, or at most d. A store that
// judges under the same lock as its write calls them one at a time (each
// waits d and no race can open); one that reads first and writes later lets
// all n see the same state before any of them writes.
func judgeGate(n int, d time.Duration) func() {
	var (
		mu     sync.Mutex
		called int
		all    = make(chan struct{})
	)
	return func() {
		mu.Lock()
		if called++; called == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(d):
		}
	}
}
