package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
)

// countingStore counts the store calls of the hot paths, so that a change
// that adds a database round trip to a request fails a test on any machine,
// however fast or loaded.
type countingStore struct {
	verity.Store
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingStore) count(name string) {
	c.mu.Lock()
	c.calls[name]++
	c.mu.Unlock()
}

func (c *countingStore) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.calls
	c.calls = map[string]int{}
	return got
}

func (c *countingStore) AccountByUsername(ctx context.Context, u string) (*verity.Account, error) {
	c.count("AccountByUsername")
	return c.Store.AccountByUsername(ctx, u)
}

func (c *countingStore) Service(ctx context.Context, id string) (*verity.Service, error) {
	c.count("Service")
	return c.Store.Service(ctx, id)
}

func (c *countingStore) User(ctx context.Context, sid, id string) (*verity.User, error) {
	c.count("User")
	return c.Store.User(ctx, sid, id)
}

func (c *countingStore) UserWithPIN(ctx context.Context, sid, id string) (*verity.User, *verity.PIN, error) {
	c.count("UserWithPIN")
	return c.Store.UserWithPIN(ctx, sid, id)
}

func (c *countingStore) CheckPIN(ctx context.Context, p verity.PINCheck) (verity.PINChecked, error) {
	c.count("CheckPIN")
	return c.Store.CheckPIN(ctx, p)
}

func (c *countingStore) PendingPIN(ctx context.Context, uid string) (*verity.PIN, error) {
	c.count("PendingPIN")
	return c.Store.PendingPIN(ctx, uid)
}

func (c *countingStore) ConsumePIN(ctx context.Context, p verity.PINConsume) (bool, error) {
	c.count("ConsumePIN")
	return c.Store.ConsumePIN(ctx, p)
}

func (c *countingStore) CountFailedTry(ctx context.Context, f verity.FailedTry) (bool, error) {
	c.count("CountFailedTry")
	return c.Store.CountFailedTry(ctx, f)
}

func (c *countingStore) StartPIN(ctx context.Context, p verity.PINStart) (verity.PINStarted, error) {
	c.count("StartPIN")
	return c.Store.StartPIN(ctx, p)
}

func (c *countingStore) SetLastMethod(ctx context.Context, uid, m string) error {
	c.count("SetLastMethod")
	return c.Store.SetLastMethod(ctx, uid, m)
}

func (c *countingStore) Factor(ctx context.Context, uid string) (*verity.Factor, error) {
	c.count("Factor")
	return c.Store.Factor(ctx, uid)
}

func (c *countingStore) UseStep(ctx context.Context, u verity.StepUse) (bool, error) {
	c.count("UseStep")
	return c.Store.UseStep(ctx, u)
}

// TestHotPathStoreCalls pins the number of database operations per request
// (with the account and service caches warm). Raise a number only with a
// reason: each one is a round trip on PostgreSQL.
func TestHotPathStoreCalls(t *testing.T) {
	counter := &countingStore{calls: map[string]int{}}
	e := newEnvWith(t, func(db *sqlite.DB) verity.Store { counter.Store = db; return counter })
	auth, sid, uid := e.serviceUser()
	secondUID := e.user(auth, sid, "second", "+3725555556")
	e.do(auth, "GET", userPath(sid, uid), nil) // warm the caches

	for _, c := range []struct {
		name    string
		request func() response
		want    map[string]int
	}{
		{"an SMS start", func() response {
			return e.do(auth, "POST", authPath(sid, secondUID), map[string]any{"method": "sms"})
		}, map[string]int{"StartPIN": 1}},
		{"a second SMS start of the same user, once allowed", func() response {
			e.clock.Advance(31e9)
			return e.do(auth, "POST", authPath(sid, secondUID), map[string]any{"method": "sms"})
		}, map[string]int{"StartPIN": 1}},
		{"a wrong PIN", func() response {
			return e.do(auth, "PUT", authPath(sid, secondUID), map[string]any{"method": "sms", "token": "x"})
		}, map[string]int{"CheckPIN": 1}},
		{"a totp start for a user without an app", func() response {
			return e.do(auth, "POST", authPath(sid, uid), map[string]any{"method": "totp"})
		}, map[string]int{"User": 1, "Factor": 1, "StartPIN": 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			counter.reset()
			if r := c.request(); r.Status != http.StatusOK {
				t.Fatalf("request = %s", r)
			}
			got := counter.reset()
			for name, n := range c.want {
				if got[name] != n {
					t.Errorf("%s: %d calls, want %d (all calls: %v)", name, got[name], n, got)
				}
			}
			total, want := 0, 0
			for _, n := range got {
				total += n
			}
			for _, n := range c.want {
				want += n
			}
			if total != want {
				t.Errorf("%d store calls in all, want %d: %v", total, want, got)
			}
		})
	}

	t.Run("an authenticator code", func(t *testing.T) {
		appUID := e.user(auth, sid, "app", "+3725555557")
		secret, _ := e.enrolApp(auth, sid, appUID)
		counter.reset()
		r := e.do(auth, "PUT", authPath(sid, appUID), map[string]any{"token": appCode(t, secret, e.clock.Now())})
		if r.Status != 200 || r.Body["method"] != "totp" || r.Body["verified"] != true {
			t.Fatalf("authenticator check = %s, want verified by totp", r)
		}
		got := counter.reset()
		// The user's app is read, judged and its step used with the user, in CheckPIN.
		want := map[string]int{"CheckPIN": 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("store calls = %v, want %v", got, want)
		}
	})

	t.Run("a right PIN", func(t *testing.T) {
		e.clock.Advance(31e9)
		_, pin := e.startSMS(auth, sid, uid)
		counter.reset()
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		got := counter.reset()
		want := map[string]int{"CheckPIN": 1}
		if len(got) != len(want) || got["CheckPIN"] != 1 {
			t.Fatalf("store calls = %v, want %v", got, want)
		}
	})
}

// TestCheckAllocations bounds the allocations of one check through the
// router, with generous headroom: a regression that, say, re-reads
// settings JSON or builds per-request maps shows up here on any machine.
func TestCheckAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count skipped in -short mode")
	}
	e := newEnv(t)
	e.sender.set(newMemSender())
	auth, sid, uid := e.serviceUser()
	body := []byte(`{"token": "000000"}`)
	e.do(auth, "POST", authPath(sid, uid), map[string]any{"method": "sms"})
	e.app.UpdateSettings(context.Background(), mustAuth(t, e, auth), sid, func(s *verity.Settings) error {
		s.MaxAttempts, s.FailureLimit = 10, 100
		return nil
	})
	e.serve(auth, "PUT", authPath(sid, uid), body) // warm caches and statements
	allocs := testing.AllocsPerRun(5, func() {
		// Wrong PINs stay INVALID for max_attempts tries and THROTTLED after:
		// the same work either way except the write.
		e.serve(auth, "PUT", authPath(sid, uid), body)
	})
	// Measured on Go 1.26 (the test env logs at debug level): 59 with the
	// user in SQLite's PIN cache, as here after its start; 70 while the
	// request's log details rode in its context, each write and its done
	// channel were new, and the keyed MACs' scratch space escaped; 116
	// while the single writer ran its statements through database/sql; 121
	// before the check's body skipped encoding/json; 203, before that, when
	// every check read the user and PIN, the cache defeated on purpose.
	const limit = 90
	if allocs > limit {
		t.Fatalf("a check allocates %.0f times, want at most %d", allocs, limit)
	}
	t.Logf("a check allocates %.0f times (limit %d)", allocs, limit)
}

func mustAuth(tb testing.TB, e *env, auth string) *verity.Account {
	tb.Helper()
	acct, err := e.app.Authenticate(context.Background(), auth)
	if err != nil {
		tb.Fatal(err)
	}
	return acct
}

// TestUnknownNamesCostWhatWrongPasswordsCost: a wrong password for an
// existing account and a name no account has must not be told apart by the
// work they cost (security invariant 4): each reads the account once, and a
// right password for a cached account reads nothing. When only unknown
// names were read, timing told them apart.
func TestUnknownNamesCostWhatWrongPasswordsCost(t *testing.T) {
	counter := &countingStore{calls: map[string]int{}}
	e := newEnvWith(t, func(db *sqlite.DB) verity.Store { counter.Store = db; return counter })
	auth, sid, _ := e.serviceUser() // the account is read, and cached, here
	name, _, _ := strings.Cut(auth, ":")
	path := "/v1/service/service/" + sid

	reads := func(header string, want int) response {
		t.Helper()
		counter.reset()
		var last response
		for range 20 {
			last = e.do(header, "GET", path, nil)
		}
		if got := counter.reset()["AccountByUsername"]; got != want {
			t.Fatalf("20 requests as %q read the account %d times, want %d", header, got, want)
		}
		return last
	}
	if r := reads(auth, 0); r.Status != http.StatusOK {
		t.Fatalf("the right password = %s, want 200", r)
	}
	wrongPassword := reads(name+":wrong-password", 20)
	unknownName := reads("nobody:wrong-password", 20)
	impossibleName := reads("no body:wrong-password", 0) // no account can have a space in its name
	for _, r := range []response{wrongPassword, unknownName, impossibleName} {
		if r.Status != http.StatusUnauthorized || string(r.Raw) != string(wrongPassword.Raw) {
			t.Fatalf("answers differ: wrong password %d %s, unknown name %d %s, impossible name %d %s",
				wrongPassword.Status, wrongPassword.Raw, unknownName.Status, unknownName.Raw, impossibleName.Status, impossibleName.Raw)
		}
	}
}
