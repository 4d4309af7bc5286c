package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestGatewayFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		code   string
		breakIt,
		fixIt func(e *env)
	}{
		{
			name:   "a gateway answering 500 makes the start answer 502",
			status: http.StatusBadGateway,
			code:   "upstream",
			breakIt: func(e *env) {
				e.gw.setStatus(http.StatusInternalServerError)
			},
			fixIt: func(e *env) { e.gw.setStatus(http.StatusOK) },
		},
		{
			name:   "an unreachable gateway makes the start answer 503",
			status: http.StatusServiceUnavailable,
			code:   "unavailable",
			breakIt: func(e *env) {
				closed := httptest.NewServer(http.NotFoundHandler())
				closed.Close() // nothing listens at its address any more
				e.sender.set(newWebhookSender(e.tb, closed.URL+"/sms", e.clock))
			},
			fixIt: func(e *env) { e.sender.set(newWebhookSender(e.tb, e.gw.srv.URL+"/sms", e.clock)) },
		},
	} {
		t.Run(tc.name+", leaves no PIN pending and keeps the resend window open", func(t *testing.T) {
			e := newEnv(t)
			auth, sid, uid := e.serviceUser()
			tc.breakIt(e)

			r := e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
			wantError(t, r, tc.status, tc.code)
			if len(e.gw.messages()) != 0 {
				t.Fatalf("the gateway accepted a message although it failed")
			}
			// Nothing is pending: the PIN the user never received cannot be checked.
			wantError(t, e.check(auth, sid, uid, "123456"), http.StatusNotFound, "not_found")

			// The failed send did not use up the resend window: an immediate
			// retry once the gateway works again succeeds, and its PIN verifies.
			tc.fixIt(e)
			_, pin := e.startSMS(auth, sid, uid)
			if got := len(e.gw.messages()); got != 1 {
				t.Fatalf("gateway accepted %d messages after the fix, want 1", got)
			}
			wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		})
	}

	t.Run("a gateway that takes the message and does not answer: 503, the PIN expires, the send counts", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		e.gw.hangUpAfterTaking()

		r := e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
		wantError(t, r, http.StatusServiceUnavailable, "unavailable")
		taken := e.gw.messages()
		if len(taken) != 1 {
			t.Fatalf("the gateway took %d messages, want 1", len(taken))
		}
		first := taken[0]
		// The message may reach the phone, but its PIN no longer verifies.
		wantCheck(t, e.check(auth, sid, uid, pinOf(t, first.Text)), false, "EXPIRED")
		// Its send counts: the resend interval holds at once, and in all at
		// most max_sends (5) messages reach the gateway in the send window
		// (10 minutes), however many starts.
		wantError(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusTooManyRequests, "rate_limited")
		statuses := map[int]int{}
		for range 15 { // 7 min 45 s
			e.clock.Advance(31 * time.Second)
			statuses[e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}).Status]++
		}
		if taken = e.gw.messages(); len(taken) != 5 || statuses[http.StatusServiceUnavailable] != 4 || statuses[http.StatusTooManyRequests] != 11 {
			t.Fatalf("the gateway took %d messages, starts answered %v; want 5 messages (4 more 503s, then 429s)", len(taken), statuses)
		}
	})

	t.Run("failed sends do not count against the 5 sends per window", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		e.gw.setStatus(http.StatusInternalServerError)
		for range 7 {
			wantError(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusBadGateway, "upstream")
		}
		e.gw.setStatus(http.StatusOK)
		for i := range 5 {
			if i > 0 {
				e.clock.Advance(31 * time.Second)
			}
			e.startSMS(auth, sid, uid)
		}
	})
}
