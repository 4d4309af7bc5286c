package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServices(t *testing.T) {
	t.Run("creating a service answers 200 with id, ctime in UTC, name and fqdn", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		r := e.do(auth, "POST", "/v1/service/service", `{"fqdn": "www.example.com", "name": "My service"}`)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{
			"id": nonEmptyString, "ctime": startCTime, "name": "My service", "fqdn": "www.example.com",
		})
		if !ctimeRE.MatchString(startCTime) {
			t.Fatalf("startCTime %q does not match %v", startCTime, ctimeRE)
		}
	})

	t.Run("a service without fqdn or name is refused with 422", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		for _, body := range []string{
			`{"name": "My service"}`,
			`{"fqdn": "www.example.com"}`,
			`{"fqdn": "", "name": ""}`,
			`{"fqdn": "www.example.com", "name": "   "}`,
			`{}`,
			`null`,
		} {
			t.Run(body, func(t *testing.T) {
				wantError(t, e.do(auth, "POST", "/v1/service/service", body), http.StatusUnprocessableEntity, "invalid")
			})
		}
	})

	t.Run("a body that is not a JSON object or has wrong types is refused with 422", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		for _, tc := range []struct{ name, body string }{
			{"non-JSON text", `fqdn=www.example.com&name=x`},
			{"empty body", ``},
			{"white space only", " \n "},
			{"truncated JSON", `{"fqdn": "www.example.com", "name": `},
			{"an array", `[{"fqdn": "www.example.com", "name": "x"}]`},
			{"a string", `"My service"`},
			{"name is a number", `{"fqdn": "www.example.com", "name": 5}`},
			{"fqdn is a boolean", `{"fqdn": true, "name": "x"}`},
			{"two objects", `{"fqdn": "a", "name": "b"} {"fqdn": "c", "name": "d"}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, e.do(auth, "POST", "/v1/service/service", tc.body), http.StatusUnprocessableEntity, "invalid")
			})
		}
		// Bad input changes nothing: a valid create afterwards is the first service named "x".
		if r := e.do(auth, "POST", "/v1/service/service", `{"fqdn": "a", "name": "x"}`); r.Status != http.StatusOK {
			t.Fatalf("create after refused bodies = %s, want 200", r)
		}
	})

	t.Run("a duplicate name in the same account is refused with 409", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		e.service(auth, "My service")
		wantError(t, e.do(auth, "POST", "/v1/service/service", map[string]string{"fqdn": "other.example.com", "name": "My service"}),
			http.StatusConflict, "conflict")
	})

	t.Run("the same name in another account is accepted with 200", func(t *testing.T) {
		e := newEnv(t)
		e.service(e.account("acme"), "My service")
		r := e.do(e.account("globex"), "POST", "/v1/service/service", map[string]string{"fqdn": "www.example.com", "name": "My service"})
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"id": nonEmptyString, "ctime": ctimeValue, "name": "My service", "fqdn": "www.example.com"})
	})

	t.Run("getting a service answers 200 with the body the create answered", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		created := e.do(auth, "POST", "/v1/service/service", map[string]string{"fqdn": "www.example.com", "name": "My service"})
		wantStatus(t, created, http.StatusOK)
		e.clock.Advance(time.Hour) // ctime is the creation time, not the time of the read
		got := e.do(auth, "GET", servicePath(created.Body["id"].(string)), nil)
		wantStatus(t, got, http.StatusOK)
		wantBody(t, got.Body, created.Body)
	})

	t.Run("getting an unknown service answers 404", func(t *testing.T) {
		e := newEnv(t)
		wantError(t, e.do(e.account("acme"), "GET", servicePath("no-such-service"), nil), http.StatusNotFound, "not_found")
	})

	t.Run("another account's service answers 403 to get, delete and its users", func(t *testing.T) {
		e := newEnv(t)
		owner := e.account("acme")
		sid := e.service(owner, "My service")
		uid := e.user(owner, sid, "alice", "+3725555555")
		intruder := e.account("globex")
		for _, tc := range []struct{ method, path string }{
			{"GET", servicePath(sid)},
			{"DELETE", servicePath(sid)},
			{"GET", usersPath(sid)},
			{"GET", userPath(sid, uid)},
			{"DELETE", userPath(sid, uid)},
		} {
			wantError(t, e.do(intruder, tc.method, tc.path, nil), http.StatusForbidden, "forbidden")
		}
		wantStatus(t, e.do(owner, "GET", servicePath(sid), nil), http.StatusOK)
	})

	t.Run("deleting a service answers 202 with a JSON object and then it is gone", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "My service")
		r := e.do(auth, "DELETE", servicePath(sid), nil)
		wantStatus(t, r, http.StatusAccepted)
		wantBody(t, r.Body, map[string]any{})
		wantError(t, e.do(auth, "GET", servicePath(sid), nil), http.StatusNotFound, "not_found")
		wantError(t, e.do(auth, "DELETE", servicePath(sid), nil), http.StatusNotFound, "not_found")
		// The name is free again.
		e.service(auth, "My service")
	})

	t.Run("deleting a service that still has users answers 409 telling to delete its users first", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "My service")
		uid := e.user(auth, sid, "alice", "+3725555555")
		r := e.do(auth, "DELETE", servicePath(sid), nil)
		wantError(t, r, http.StatusConflict, "conflict")
		if msg := r.Body["message"].(string); !strings.Contains(msg, "delete its users first") {
			t.Fatalf("message = %q, want it to tell to delete its users first", msg)
		}
		wantStatus(t, e.do(auth, "GET", servicePath(sid), nil), http.StatusOK)
		wantStatus(t, e.do(auth, "DELETE", userPath(sid, uid), nil), http.StatusAccepted)
		wantStatus(t, e.do(auth, "DELETE", servicePath(sid), nil), http.StatusAccepted)
	})
}
