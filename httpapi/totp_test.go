package httpapi_test

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verityhq/verity/totp"
)

func totpPath(sid, uid string) string { return userPath(sid, uid) + "/totp" }

// appCode is what an authenticator app holding secret shows at t.
func appCode(tb testing.TB, secret string, t time.Time) string {
	tb.Helper()
	seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		tb.Fatalf("secret %q is not base32: %v", secret, err)
	}
	p := totp.DefaultParams()
	return totp.Code(seed, totp.Step(t, p.Period), p)
}

// enrolApp enrols and confirms an authenticator app over HTTP and returns
// its secret and recovery codes. The clock moves past the confirming step.
func (e *env) enrolApp(auth, sid, uid string) (string, []any) {
	e.tb.Helper()
	r := e.do(auth, "POST", totpPath(sid, uid), nil)
	wantStatus(e.tb, r, 200)
	secret := r.Body["secret"].(string)
	r = e.do(auth, "PUT", totpPath(sid, uid), map[string]any{"token": appCode(e.tb, secret, e.clock.Now())})
	wantStatus(e.tb, r, 200)
	e.clock.Advance(30 * time.Second)
	return secret, r.Body["recovery_codes"].([]any)
}

func TestAuthenticatorEnrolment(t *testing.T) {
	e := newEnv(t)
	auth, sid, uid := e.serviceUser()

	r := e.do(auth, "POST", totpPath(sid, uid), nil)
	wantStatus(t, r, 200)
	secret, _ := r.Body["secret"].(string)
	uri, _ := r.Body["otpauth_uri"].(string)
	t.Run("enrolment answers the secret, the otpauth URI, a base64 PNG and pending", func(t *testing.T) {
		if r.Body["status"] != "pending" || len(secret) != 32 {
			t.Fatalf("enrolment = %s", r)
		}
		if !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+secret) || !strings.Contains(uri, "issuer=") {
			t.Fatalf("otpauth_uri = %q", uri)
		}
		raw, err := base64.StdEncoding.DecodeString(r.Body["qr_png"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
			t.Fatalf("qr_png is not a PNG: %v", err)
		}
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Fatal("the enrolment answer, which holds the seed, may be cached")
		}
	})
	t.Run("the QR code is served as image/png while pending", func(t *testing.T) {
		req := httptest.NewRequest("GET", totpPath(sid, uid)+"/qr.png", nil)
		req.Header.Set("X-Service-Auth", auth)
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/png" {
			t.Fatalf("qr.png = %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		if _, err := png.Decode(rec.Body); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("status while pending does not show the secret", func(t *testing.T) {
		r := e.do(auth, "GET", totpPath(sid, uid), nil)
		wantStatus(t, r, 200)
		if r.Body["status"] != "pending" || strings.Contains(string(r.Raw), secret) {
			t.Fatalf("GET totp = %s", r)
		}
	})
	t.Run("a wrong code does not activate", func(t *testing.T) {
		wantError(t, e.do(auth, "PUT", totpPath(sid, uid), map[string]any{"token": "000000"}), 422, "invalid")
		wantError(t, e.do(auth, "PUT", totpPath(sid, uid), map[string]any{"token": 123456}), 422, "invalid")
	})
	t.Run("a right code activates and shows 10 recovery codes once", func(t *testing.T) {
		r := e.do(auth, "PUT", totpPath(sid, uid), map[string]any{"token": appCode(t, secret, e.clock.Now())})
		wantStatus(t, r, 200)
		codes, _ := r.Body["recovery_codes"].([]any)
		if r.Body["status"] != "active" || len(codes) != 10 {
			t.Fatalf("confirm = %s", r)
		}
		r = e.do(auth, "GET", totpPath(sid, uid), nil)
		wantStatus(t, r, 200)
		if r.Body["status"] != "active" || r.Body["recovery_codes_left"] != float64(10) || strings.Contains(string(r.Raw), secret) {
			t.Fatalf("GET totp after activation = %s", r)
		}
	})
	t.Run("enrolling again while active conflicts, and the QR is gone", func(t *testing.T) {
		wantError(t, e.do(auth, "POST", totpPath(sid, uid), nil), 409, "conflict")
		wantError(t, e.do(auth, "GET", totpPath(sid, uid)+"/qr.png", nil), 404, "not_found")
	})
	t.Run("another account cannot see or change the app", func(t *testing.T) {
		other := e.account("other")
		wantError(t, e.do(other, "GET", totpPath(sid, uid), nil), 403, "forbidden")
		wantError(t, e.do(other, "DELETE", totpPath(sid, uid), nil), 403, "forbidden")
	})
	t.Run("delete answers 202 and the app is gone", func(t *testing.T) {
		r := e.do(auth, "DELETE", totpPath(sid, uid), nil)
		wantStatus(t, r, http.StatusAccepted)
		wantError(t, e.do(auth, "GET", totpPath(sid, uid), nil), 404, "not_found")
		wantError(t, e.do(auth, "DELETE", totpPath(sid, uid), nil), 404, "not_found")
	})
}

// TestVerigatorTOTPFlow replays the Python client's initiate(…, "totp") and
// verify(…, "totp", token) against a user with an authenticator app.
func TestVerigatorTOTPFlow(t *testing.T) {
	e := newEnv(t)
	auth, sid, uid := e.serviceUser()
	secret, recovery := e.enrolApp(auth, sid, uid)
	sentBefore := len(e.gw.messages())

	r := e.do(auth, "POST", authPath(sid, uid), map[string]any{"method": "totp"})
	wantStatus(t, r, 200)
	if r.Body["method"] != "totp" || r.Body["auth_id"] != nil {
		t.Fatalf("initiate(totp) = %s, want method totp and auth_id null", r)
	}
	if got := len(e.gw.messages()); got != sentBefore {
		t.Fatalf("initiate(totp) sent %d messages, want none", got-sentBefore)
	}

	code := appCode(t, secret, e.clock.Now())
	r = e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "totp", "token": code})
	wantStatus(t, r, 200)
	if r.Body["method"] != "totp" || r.Body["verified"] != true {
		t.Fatalf("verify(totp) = %s", r)
	}
	t.Run("the same code again is refused", func(t *testing.T) {
		wantAppCheck(t, e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "totp", "token": code}), false, "INVALID")
	})
	t.Run("a check with only a token uses the app after a totp start", func(t *testing.T) {
		e.clock.Advance(30 * time.Second)
		wantAppCheck(t, e.check(auth, sid, uid, appCode(t, secret, e.clock.Now())), true, "VERIFIED")
	})
	t.Run("a recovery code verifies once", func(t *testing.T) {
		rc := recovery[0].(string)
		r := e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "recovery", "token": rc})
		wantStatus(t, r, 200)
		if r.Body["verified"] != true || r.Body["method"] != "recovery" {
			t.Fatalf("recovery = %s", r)
		}
		r = e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "recovery", "token": rc})
		if r.Body["verified"] != false {
			t.Fatalf("recovery code reused = %s", r)
		}
	})
	t.Run("sms still works for a user with an app", func(t *testing.T) {
		_, pin := e.startSMS(auth, sid, uid)
		wantCheck(t, e.do(auth, "PUT", authPath(sid, uid), map[string]any{"method": "sms", "token": pin}), true, "VERIFIED")
	})
}

// wantAppCheck asserts a check answered by the authenticator app.
func wantAppCheck(tb testing.TB, r response, verified bool, result string) {
	tb.Helper()
	wantStatus(tb, r, 200)
	status, _ := r.Body["status"].(map[string]any)
	if r.Body["method"] != "totp" || r.Body["verified"] != verified || status["result"] != result {
		tb.Fatalf("check = %s, want method totp, verified %v, result %s", r, verified, result)
	}
}
