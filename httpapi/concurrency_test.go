package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
)

// race runs n requests at once: every goroutine is parked on one channel
// before it is closed, so they reach the server together.
func race(n int, req func(i int) response) []response {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	out := make([]response, n)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			out[i] = req(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return out
}

// outcomes counts answers by status and check result, e.g. "200 INVALID".
func outcomes(rs []response) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		key := fmt.Sprint(r.Status)
		if st, ok := r.Body["status"].(map[string]any); ok {
			key += fmt.Sprintf(" %v", st["result"])
			if v, _ := r.Body["verified"].(bool); v != (st["result"] == "VERIFIED") {
				key += " (verified disagrees with result)"
			}
		}
		m[key]++
	}
	return m
}

// rightPINRace checks the right PIN n times at once and returns what is
// wrong with the answers: anything but one VERIFIED and n-1 INVALID, all 200.
func rightPINRace(e *env, n int) error {
	auth, sid, uid := e.serviceUser()
	_, pin := e.startSMS(auth, sid, uid)
	got := outcomes(race(n, func(int) response { return e.check(auth, sid, uid, pin) }))
	want := map[string]int{"200 VERIFIED": 1, "200 INVALID": n - 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("%d simultaneous checks of the right PIN answered %v, want %v", n, got, want)
	}
	return nil
}

// wrongPINRace checks n wrong PINs at once, then the right one, and returns
// what is wrong: anything but max_attempts (5) INVALID and n-5 THROTTLED,
// all 200, followed by a THROTTLED right PIN.
func wrongPINRace(e *env, n int) error {
	auth, sid, uid := e.serviceUser()
	_, pin := e.startSMS(auth, sid, uid)
	got := outcomes(race(n, func(i int) response { return e.check(auth, sid, uid, wrongPIN(pin, i)) }))
	want := map[string]int{"200 INVALID": 5, "200 THROTTLED": n - 5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("%d simultaneous wrong PINs answered %v, want %v", n, got, want)
	}
	if after := outcomes([]response{e.check(auth, sid, uid, pin)}); after["200 THROTTLED"] != 1 {
		return fmt.Errorf("the right PIN after %d wrong ones answered %v, want 200 THROTTLED", n, after)
	}
	return nil
}

func TestConcurrency(t *testing.T) {
	t.Run("100 simultaneous checks of the right PIN verify exactly once", func(t *testing.T) {
		if err := rightPINRace(newEnv(t), 100); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("200 simultaneous wrong PINs count exactly max_attempts and the right PIN is then throttled", func(t *testing.T) {
		if err := wrongPINRace(newEnv(t), 200); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("200 simultaneous wrong PINs count exactly the user's failure budget when it is the tighter limit", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		wantStatus(t, e.do(auth, "PATCH", settingsPath(sid), `{"max_attempts": 10, "failure_limit": 3}`), http.StatusOK)
		_, pin := e.startSMS(auth, sid, uid)
		got := outcomes(race(200, func(i int) response { return e.check(auth, sid, uid, wrongPIN(pin, i)) }))
		if want := map[string]int{"200 INVALID": 3, "200 THROTTLED": 197}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("200 simultaneous wrong PINs answered %v, want %v", got, want)
		}
		wantCheck(t, e.check(auth, sid, uid, pin), false, "THROTTLED")
		e.clock.Advance(31 * time.Second)
		wantError(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusTooManyRequests, "rate_limited")
	})

	t.Run("50 simultaneous starts send exactly one PIN", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		got := outcomes(race(50, func(int) response {
			return e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
		}))
		want := map[string]int{"200": 1, "429": 49}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("50 simultaneous starts answered %v, want %v", got, want)
		}
		if n := len(e.gw.messages()); n != 1 {
			t.Fatalf("gateway received %d messages, want 1", n)
		}
		_, pin := pinFromLast(t, e)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("simultaneous checks of different users do not disturb each other", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		const n = 40
		uids, pins := make([]string, n), make([]string, n)
		for i := range n {
			uids[i] = e.user(auth, sid, fmt.Sprintf("user%d", i), "+3725555555")
			_, pins[i] = e.startSMS(auth, sid, uids[i])
		}
		got := outcomes(race(n, func(i int) response { return e.check(auth, sid, uids[i], pins[i]) }))
		if want := map[string]int{"200 VERIFIED": n}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("checks of %d users answered %v, want %v", n, got, want)
		}
	})
}

// The two races above prove something only if they fail against a store
// that decides "once" in application memory. racyStore is such a store:
// ConsumePIN and CountFailedTry read the PIN, decide in Go, wait until every
// concurrent caller has read too (the widest possible race window, made
// deterministic), and then write without a condition. The real store is not
// touched: racyStore wraps it in this test only.
type racyStore struct {
	*sqlite.DB
	gate *gate
}

// CheckPIN reads, judges and writes as three separate steps, with the
// racy writes below: the shape every check store must not have.
func (s *racyStore) CheckPIN(ctx context.Context, c verity.PINCheck) (verity.PINChecked, error) {
	u, p, err := s.DB.UserWithPIN(ctx, c.ServiceID, c.UserID)
	if err != nil {
		return verity.PINChecked{}, err
	}
	out := verity.PINChecked{User: u, PIN: p, Verdict: c.Judge(u, p)}
	switch {
	case p == nil:
		out.Verdict = verity.LeaveAsIs
	case out.Verdict == verity.ConsumeIt:
		out.Applied, err = s.ConsumePIN(ctx, c.Consume(p))
	case out.Verdict == verity.CountIt:
		out.Applied, err = s.CountFailedTry(ctx, c.FailedTry(p))
	}
	return out, err
}

func (s *racyStore) ConsumePIN(ctx context.Context, c verity.PINConsume) (bool, error) {
	p, err := s.DB.PendingPIN(ctx, c.UserID)
	if err != nil {
		return false, err
	}
	ok := p.ID == c.PINID && p.ConsumedAt == nil && c.Now.Before(p.ExpiresAt) && p.Attempts < c.MaxAttempts
	s.gate.wait()
	if _, err := s.DB.ConsumePIN(ctx, c); err != nil { // the blind write
		return false, err
	}
	return ok, nil
}

func (s *racyStore) CountFailedTry(ctx context.Context, f verity.FailedTry) (bool, error) {
	p, err := s.DB.PendingPIN(ctx, f.UserID)
	if err != nil {
		return false, err
	}
	ok := p.Attempts < f.MaxAttempts
	s.gate.wait()
	if _, err := s.DB.CountFailedTry(ctx, f); err != nil {
		return false, err
	}
	return ok, nil
}

// gate opens when n callers wait on it. The timeout only keeps a broken
// test from hanging; no result depends on it.
type gate struct {
	mu   sync.Mutex
	n    int
	open chan struct{}
}

func newGate(n int) *gate { return &gate{n: n, open: make(chan struct{})} }

func (g *gate) wait() {
	g.mu.Lock()
	if g.n--; g.n == 0 {
		close(g.open)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(time.Minute):
	}
}

func TestConcurrencyTestsCatchARacyStore(t *testing.T) {
	t.Run("the right-PIN race reports a double consume", func(t *testing.T) {
		e := newEnvWith(t, func(db *sqlite.DB) verity.Store { return &racyStore{DB: db, gate: newGate(100)} })
		err := rightPINRace(e, 100)
		if err == nil {
			t.Fatal("rightPINRace passed against a store that consumes a PIN many times")
		}
		t.Logf("as intended, against the racy store: %v", err)
	})

	t.Run("the wrong-PIN race reports uncounted tries", func(t *testing.T) {
		e := newEnvWith(t, func(db *sqlite.DB) verity.Store { return &racyStore{DB: db, gate: newGate(200)} })
		err := wrongPINRace(e, 200)
		if err == nil {
			t.Fatal("wrongPINRace passed against a store that counts tries in memory")
		}
		t.Logf("as intended, against the racy store: %v", err)
	})

	t.Run("the racy store is otherwise a working store", func(t *testing.T) {
		e := newEnvWith(t, func(db *sqlite.DB) verity.Store { return &racyStore{DB: db, gate: newGate(1)} })
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		if got := e.check(auth, sid, uid, pin); got.Status != http.StatusOK {
			t.Fatalf("repeat check = %s", got)
		}
	})
}
