package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestAuthHeader(t *testing.T) {
	e := newEnv(t)
	auth := e.account("acme") // "acme:<password>"; generated passwords have no colon
	sid := e.service(auth, "My service")
	password := strings.TrimPrefix(auth, "acme:")
	if strings.Contains(password, ":") {
		t.Fatalf("generated password %q contains a colon", password)
	}

	for _, tc := range []struct {
		name   string
		header string
		want   int
	}{
		{"a request without the header answers 401", "", http.StatusUnauthorized},
		{"a header without a colon answers 401", "acme" + password, http.StatusUnauthorized},
		{"a header with an empty password answers 401", "acme:", http.StatusUnauthorized},
		{"a header with an empty username answers 401", ":" + password, http.StatusUnauthorized},
		{"an unknown user answers 401", "nobody:" + password, http.StatusUnauthorized},
		{"a wrong password answers 401", "acme:" + password + "x", http.StatusUnauthorized},
		{"a username that differs only in case answers 401", "ACME:" + password, http.StatusUnauthorized},
		{"the header is split at the first colon so extra text joins the password and answers 401", auth + ":extra", http.StatusUnauthorized},
		{"a colon inserted inside the password is part of it and answers 401", "acme:" + password[:4] + ":" + password[4:], http.StatusUnauthorized},
		{"the right credentials answer 200", auth, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.header, "GET", servicePath(sid), nil)
			if tc.want == http.StatusOK {
				wantStatus(t, r, http.StatusOK)
				return
			}
			wantError(t, r, tc.want, "unauthorized")
		})
	}

	t.Run("bad credentials answer 401 before saying whether a service exists", func(t *testing.T) {
		for _, path := range []string{servicePath("no-such-service"), servicePath(sid)} {
			wantError(t, e.do("acme:wrong", "GET", path, nil), http.StatusUnauthorized, "unauthorized")
		}
	})

	t.Run("every authenticated endpoint refuses a missing header with 401", func(t *testing.T) {
		for _, tc := range []struct{ method, path, body string }{
			{"POST", "/v1/service/service", `{"fqdn": "a", "name": "b"}`},
			{"DELETE", servicePath(sid), ""},
			{"GET", usersPath(sid), ""},
			{"POST", usersPath(sid), `{"id_in_service": "a", "phone_number": "+3725555555"}`},
			{"GET", userPath(sid, "u"), ""},
			{"GET", servicePath(sid) + "/user/u", ""},
			{"DELETE", userPath(sid, "u"), ""},
			{"POST", authPath(sid, "u"), `{"method": "sms"}`},
			{"PUT", authPath(sid, "u"), `{"token": "123456"}`},
			{"GET", servicePath(sid) + "/settings", ""},
			{"PATCH", servicePath(sid) + "/settings", `{"pin_length": 8}`},
		} {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := e.do("", tc.method, tc.path, body)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s %s without credentials = %s, want 401", tc.method, tc.path, r)
			}
		}
	})
}
