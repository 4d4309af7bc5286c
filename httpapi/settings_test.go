package httpapi_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

// defaultSettings holds the documented defaults of a new service's
// settings. The body may hold more fields (extensions such as TOTP add
// their own): wantSettings checks these and ignores the rest.
func defaultSettings() map[string]any {
	return map[string]any{
		"pin_length":              6.0,
		"pin_validity_minutes":    5.0,
		"max_attempts":            5.0,
		"max_sends":               5.0,
		"send_window_minutes":     10.0,
		"resend_interval_seconds": 30.0,
		"failure_limit":           10.0,
		"failure_window_minutes":  60.0,
		"message_template":        "Your {service} code is <PIN>",
		"sender_name":             "Verity",
	}
}

func settingsPath(sid string) string { return servicePath(sid) + "/settings" }

// wantSettings fails the test unless every field of want has that value in got.
func wantSettings(tb testing.TB, got, want map[string]any) {
	tb.Helper()
	sub := make(map[string]any, len(want))
	for k := range want {
		if v, ok := got[k]; ok {
			sub[k] = v
		}
	}
	wantBody(tb, sub, want)
}

// getSettings returns a service's whole settings body.
func getSettings(tb testing.TB, e *env, auth, sid string) map[string]any {
	tb.Helper()
	r := e.do(auth, "GET", settingsPath(sid), nil)
	wantStatus(tb, r, http.StatusOK)
	return r.Body
}

func TestSettings(t *testing.T) {
	t.Run("a new service has the default settings", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		wantSettings(t, getSettings(t, e, auth, sid), defaultSettings())
	})

	t.Run("patching pin_length 8 answers the new settings and the next PIN has 8 digits", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		want := getSettings(t, e, auth, sid)
		want["pin_length"] = 8.0
		r := e.do(auth, "PATCH", settingsPath(sid), `{"pin_length": 8}`)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, want) // only pin_length changed
		wantBody(t, getSettings(t, e, auth, sid), want)

		authID, pin := e.startSMS(auth, sid, uid)
		if text := e.gw.message(t, authID).Text; !regexp.MustCompile(`^Your Acme code is \d{8}$`).MatchString(text) {
			t.Fatalf("text = %q, want an 8-digit code", text)
		}
		wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	})

	t.Run("patched template, sender name and max_attempts shape the next verification", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		r := e.do(auth, "PATCH", settingsPath(sid),
			`{"message_template": "<PIN> is your {service} code", "sender_name": "Acme", "max_attempts": 2}`)
		wantStatus(t, r, http.StatusOK)
		r = e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
		wantStatus(t, r, http.StatusOK)
		m := e.gw.message(t, r.Body["auth_id"].(string))
		sub := regexp.MustCompile(`^(\d{6}) is your Acme code$`).FindStringSubmatch(m.Text)
		if sub == nil || m.From != "Acme" {
			t.Fatalf("message from %q text %q, want from Acme and the patched template", m.From, m.Text)
		}
		wantCheck(t, e.check(auth, sid, uid, wrongPIN(sub[1], 0)), false, "INVALID")
		wantCheck(t, e.check(auth, sid, uid, wrongPIN(sub[1], 1)), false, "INVALID")
		wantCheck(t, e.check(auth, sid, uid, sub[1]), false, "THROTTLED")
	})

	t.Run("a refused patch answers 422 and changes nothing", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		before := getSettings(t, e, auth, sid)
		for _, tc := range []struct{ name, body string }{
			{"pin_length below 4", `{"pin_length": 3}`},
			{"pin_length above 10", `{"pin_length": 11}`},
			{"pin_validity_minutes above 30", `{"pin_validity_minutes": 31}`},
			{"pin_validity_minutes 0", `{"pin_validity_minutes": 0}`},
			{"max_attempts 0", `{"max_attempts": 0}`},
			{"resend_interval_seconds below 10", `{"resend_interval_seconds": 9}`},
			{"failure_limit above 100", `{"failure_limit": 101}`},
			{"a template without <PIN>", `{"message_template": "Your {service} code"}`},
			{"a template with <PIN> twice", `{"message_template": "<PIN> <PIN>"}`},
			{"an empty sender name", `{"sender_name": ""}`},
			{"a sender name with punctuation", `{"sender_name": "Acme!"}`},
			{"an unknown field", `{"pin_lenght": 8}`},
			{"an unknown field beside a valid one", `{"pin_length": 8, "colour": "red"}`},
			{"a valid field beside an invalid one", `{"pin_length": 8, "max_attempts": 11}`},
			{"a number as a string", `{"pin_length": "8"}`},
			{"a fraction", `{"pin_length": 7.5}`},
			{"a string as a number", `{"message_template": 5}`},
			{"not JSON", `pin_length=8`},
			{"an array", `[{"pin_length": 8}]`},
			{"trailing data", `{"pin_length": 8} {}`},
			{"an empty body", ``},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, e.do(auth, "PATCH", settingsPath(sid), tc.body), http.StatusUnprocessableEntity, "invalid")
				wantBody(t, getSettings(t, e, auth, sid), before)
			})
		}
	})

	t.Run("another account's settings answer 403 and stay unchanged", func(t *testing.T) {
		e := newEnv(t)
		owner := e.account("acme")
		sid := e.service(owner, "Acme")
		intruder := e.account("globex")
		before := getSettings(t, e, owner, sid)
		wantError(t, e.do(intruder, "GET", settingsPath(sid), nil), http.StatusForbidden, "forbidden")
		wantError(t, e.do(intruder, "PATCH", settingsPath(sid), `{"pin_length": 4}`), http.StatusForbidden, "forbidden")
		wantBody(t, getSettings(t, e, owner, sid), before)
	})

	t.Run("settings of an unknown service answer 404", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		wantError(t, e.do(auth, "GET", settingsPath("no-such-service"), nil), http.StatusNotFound, "not_found")
		wantError(t, e.do(auth, "PATCH", settingsPath("no-such-service"), `{"pin_length": 8}`), http.StatusNotFound, "not_found")
	})

	t.Run("a shorter pin validity applies to PINs sent after the change", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		wantStatus(t, e.do(auth, "PATCH", settingsPath(sid), `{"pin_validity_minutes": 1}`), http.StatusOK)
		_, pin := e.startSMS(auth, sid, uid)
		e.clock.Advance(time.Minute)
		wantCheck(t, e.check(auth, sid, uid, pin), false, "EXPIRED")
	})
}
