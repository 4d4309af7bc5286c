package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// wantRateLimited fails the test unless r is a 429 whose Retry-After header
// and retry_after field both say wait seconds.
func wantRateLimited(tb testing.TB, r response, wait int) {
	tb.Helper()
	wantError(tb, r, http.StatusTooManyRequests, "rate_limited")
	h := r.Header.Get("Retry-After")
	secs, err := strconv.Atoi(h)
	if err != nil {
		tb.Fatalf("Retry-After = %q, want whole seconds", h)
	}
	if secs != wait {
		tb.Fatalf("Retry-After = %d, want %d", secs, wait)
	}
	if got, ok := r.Body["retry_after"].(float64); !ok || got != float64(secs) {
		tb.Fatalf("retry_after = %#v, want %d (the Retry-After header)", r.Body["retry_after"], secs)
	}
}

func TestPINExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		want    string
	}{
		{"a PIN checked 4m59s after it was sent still verifies", 4*time.Minute + 59*time.Second, "VERIFIED"},
		{"a PIN checked 1µs before its validity ends still verifies", 5*time.Minute - time.Microsecond, "VERIFIED"},
		{"a PIN checked exactly when its validity ends is EXPIRED", 5 * time.Minute, "EXPIRED"},
		{"a PIN checked 5m and 1µs after it was sent is EXPIRED", 5*time.Minute + time.Microsecond, "EXPIRED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			auth, sid, uid := e.serviceUser()
			_, pin := e.startSMS(auth, sid, uid)
			e.clock.Advance(tc.advance)
			wantCheck(t, e.check(auth, sid, uid, pin), tc.want == "VERIFIED", tc.want)
			if tc.want == "EXPIRED" {
				// A wrong code for an expired PIN is EXPIRED too, not a counted try.
				wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, 0)), false, "EXPIRED")
			}
		})
	}
}

func TestWrongTries(t *testing.T) {
	t.Run("5 wrong PINs are INVALID, the 6th and then the right one are THROTTLED", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		for i := range 5 {
			wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, i)), false, "INVALID")
		}
		wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, 5)), false, "THROTTLED")
		wantCheck(t, e.check(auth, sid, uid, pin), false, "THROTTLED")

		// The dead PIN is replaced by starting a new one, which verifies.
		e.clock.Advance(31 * time.Second)
		_, pin = e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("4 wrong PINs leave the right one verifiable", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		for i := range 4 {
			wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, i)), false, "INVALID")
		}
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("the failure budget survives a resend: two PINs with 5 wrong tries each lock the user out", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		for i := range 5 {
			wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, i)), false, "INVALID")
		}
		e.clock.Advance(31 * time.Second)
		_, pin = e.startSMS(auth, sid, uid)
		for i := range 5 {
			wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, i)), false, "INVALID")
		}
		wantCheck(t, e.check(auth, sid, uid, pin), false, "THROTTLED")

		// 10 failures (the default failure_limit) in the 60 minute window
		// that opened at the first failure, 62 s ago.
		e.clock.Advance(31 * time.Second)
		sent := len(e.gw.messages())
		wantRateLimited(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), 3600-62)
		if n := len(e.gw.messages()); n != sent {
			t.Fatalf("a refused start sent a message (%d, was %d)", n, sent)
		}
		// When the window ends the user may try again.
		e.clock.Advance(time.Hour - 62*time.Second)
		_, pin = e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})
}

func TestSendLimits(t *testing.T) {
	t.Run("a second start within 30 s answers 429 with Retry-After and sends nothing", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		firstID, firstPIN := e.startSMS(auth, sid, uid)
		start := func() response { return e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}) }

		wantRateLimited(t, start(), 30)
		e.clock.Advance(10 * time.Second)
		wantRateLimited(t, start(), 20)
		e.clock.Advance(19*time.Second + 500*time.Millisecond)
		wantRateLimited(t, start(), 1) // half a second left rounds up, never to 0
		if n := len(e.gw.messages()); n != 1 {
			t.Fatalf("gateway received %d messages, want 1", n)
		}
		// The refused starts did not replace the pending PIN.
		wantCheck(t, e.do(auth, "PUT", authPath(sid, uid), map[string]any{"token": firstPIN, "auth_id": firstID}), true, "VERIFIED")
	})

	t.Run("a start exactly 30 s after the previous one is accepted", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		e.startSMS(auth, sid, uid)
		e.clock.Advance(30 * time.Second)
		e.startSMS(auth, sid, uid)
		if n := len(e.gw.messages()); n != 2 {
			t.Fatalf("gateway received %d messages, want 2", n)
		}
	})

	t.Run("after a verified check a new start is accepted at once", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		_, pin = e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("at most 5 sends in 10 minutes and Retry-After counts from the oldest", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		for i := range 5 {
			if i > 0 {
				e.clock.Advance(31 * time.Second)
			}
			e.startSMS(auth, sid, uid)
		}
		e.clock.Advance(31 * time.Second) // 155 s after the first send
		wantRateLimited(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), 600-155)
		if n := len(e.gw.messages()); n != 5 {
			t.Fatalf("gateway received %d messages, want 5", n)
		}
		// A verified PIN does not buy a sixth send either.
		_, pin := pinFromLast(t, e)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		wantRateLimited(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), 600-155)

		// When the oldest send leaves the window, one more is allowed.
		e.clock.Advance((600 - 155) * time.Second)
		e.startSMS(auth, sid, uid)
	})

	t.Run("the limits of one user do not touch another", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		e.startSMS(auth, sid, uid)
		other := e.user(auth, sid, "bob", "+3725555556")
		e.startSMS(auth, sid, other)
	})
}

// pinFromLast returns the id and PIN of the newest message the gateway accepted.
func pinFromLast(tb testing.TB, e *env) (string, string) {
	tb.Helper()
	msgs := e.gw.messages()
	if len(msgs) == 0 {
		tb.Fatal("the gateway received no message")
	}
	m := msgs[len(msgs)-1]
	return m.ID, pinOf(tb, m.Text)
}
