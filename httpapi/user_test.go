package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestUsers(t *testing.T) {
	t.Run("registering a user answers 200 with id, ctime and id_in_service", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		r := e.do(auth, "POST", usersPath(sid), `{"id_in_service": "alice@example.com", "phone_number": "+3725555555"}`)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"id": nonEmptyString, "ctime": startCTime, "id_in_service": "alice@example.com"})
	})

	t.Run("a phone number with spaces is normalised to E.164 and messages go there", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		spaced := e.user(auth, sid, "alice", "+372 5555 555")
		plain := e.user(auth, sid, "bob", "+3725555555")
		for _, uid := range []string{spaced, plain} {
			authID, _ := e.startSMS(auth, sid, uid)
			if got, want := e.gw.message(t, authID).To, "+3725555555"; got != want {
				t.Fatalf("message to = %q, want %q", got, want)
			}
		}
	})

	t.Run("an invalid phone number is refused with 422 and nothing is registered", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		for _, tc := range []struct{ name, phone string }{
			{"no plus and country code", "12345"},
			{"too short for its country", "+1 555"},
			{"letters inside", "+372abc5555"},
			{"no such country code", "+99912345678"},
			{"empty", ""},
			{"only a plus", "+"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(auth, "POST", usersPath(sid), map[string]string{"id_in_service": "alice", "phone_number": tc.phone})
				wantError(t, r, http.StatusUnprocessableEntity, "invalid")
			})
		}
		list := e.do(auth, "GET", usersPath(sid), nil)
		wantStatus(t, list, http.StatusOK)
		wantBody(t, list.Body, map[string]any{"total": 0.0, "users": []any{}})
	})

	t.Run("a registration with missing or wrongly typed fields is refused with 422", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		for _, body := range []string{
			`{"phone_number": "+3725555555"}`,
			`{"id_in_service": "alice"}`,
			`{"id_in_service": "   ", "phone_number": "+3725555555"}`,
			`{"id_in_service": 42, "phone_number": "+3725555555"}`,
			`{"id_in_service": "alice", "phone_number": 3725555555}`,
			`not json`,
			``,
		} {
			wantError(t, e.do(auth, "POST", usersPath(sid), body), http.StatusUnprocessableEntity, "invalid")
		}
	})

	t.Run("a duplicate id_in_service answers 409 but another service may reuse it", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		e.user(auth, sid, "alice", "+3725555555")
		r := e.do(auth, "POST", usersPath(sid), map[string]string{"id_in_service": "alice", "phone_number": "+3725555556"})
		wantError(t, r, http.StatusConflict, "conflict")
		other := e.service(auth, "Other")
		e.user(auth, other, "alice", "+3725555555")
	})

	t.Run("registering in an unknown service answers 404", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		r := e.do(auth, "POST", usersPath("no-such-service"), map[string]string{"id_in_service": "alice", "phone_number": "+3725555555"})
		wantError(t, r, http.StatusNotFound, "not_found")
	})

	t.Run("the list holds every user in creation order and limit caps only the page", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		var want []any
		for i, name := range []string{"zed", "alice", "mike"} {
			r := e.do(auth, "POST", usersPath(sid), map[string]string{"id_in_service": name, "phone_number": fmt.Sprintf("+372555555%d", i)})
			wantStatus(t, r, http.StatusOK)
			want = append(want, r.Body)
			e.clock.Advance(time.Second)
		}
		r := e.do(auth, "GET", usersPath(sid), nil)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"total": 3.0, "users": want})

		r = e.do(auth, "GET", usersPath(sid)+"?limit=1", nil)
		wantStatus(t, r, http.StatusOK)
		wantBody(t, r.Body, map[string]any{"total": 3.0, "users": want[:1]})

		for _, bad := range []string{"x", "0", "-1", "1.5"} {
			wantError(t, e.do(auth, "GET", usersPath(sid)+"?limit="+bad, nil), http.StatusUnprocessableEntity, "invalid")
		}
	})

	t.Run("a user reads the same at the plural and the singular path", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		created := e.do(auth, "POST", usersPath(sid), map[string]string{"id_in_service": "alice", "phone_number": "+3725555555"})
		wantStatus(t, created, http.StatusOK)
		uid := created.Body["id"].(string)
		for _, path := range []string{userPath(sid, uid), servicePath(sid) + "/user/" + uid} {
			r := e.do(auth, "GET", path, nil)
			wantStatus(t, r, http.StatusOK)
			wantBody(t, r.Body, created.Body)
		}
	})

	t.Run("an unknown user answers 404 at both paths, also when it belongs to another service", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		other := e.service(auth, "Other")
		elsewhere := e.user(auth, other, "alice", "+3725555555")
		for _, uid := range []string{"no-such-user", elsewhere} {
			for _, path := range []string{userPath(sid, uid), servicePath(sid) + "/user/" + uid} {
				wantError(t, e.do(auth, "GET", path, nil), http.StatusNotFound, "not_found")
			}
			wantError(t, e.do(auth, "DELETE", userPath(sid, uid), nil), http.StatusNotFound, "not_found")
		}
		wantError(t, e.do(auth, "GET", userPath("no-such-service", elsewhere), nil), http.StatusNotFound, "not_found")
	})

	t.Run("a user of another account's service answers 403", func(t *testing.T) {
		e := newEnv(t)
		owner := e.account("acme")
		sid := e.service(owner, "Acme")
		uid := e.user(owner, sid, "alice", "+3725555555")
		intruder := e.account("globex")
		wantError(t, e.do(intruder, "GET", userPath(sid, uid), nil), http.StatusForbidden, "forbidden")
		wantError(t, e.do(intruder, "POST", usersPath(sid), map[string]string{"id_in_service": "bob", "phone_number": "+3725555555"}),
			http.StatusForbidden, "forbidden")
		wantError(t, e.do(intruder, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusForbidden, "forbidden")
		wantError(t, e.do(intruder, "PUT", authPath(sid, uid), map[string]string{"token": "123456"}), http.StatusForbidden, "forbidden")
		if n := len(e.gw.messages()); n != 0 {
			t.Fatalf("%d messages sent for another account's start, want 0", n)
		}
	})

	t.Run("deleting a user answers 202 with a JSON object and then it is gone", func(t *testing.T) {
		e := newEnv(t)
		auth, sid, uid := e.serviceUser()
		e.startSMS(auth, sid, uid) // a pending PIN goes with the user
		r := e.do(auth, "DELETE", userPath(sid, uid), nil)
		wantStatus(t, r, http.StatusAccepted)
		wantBody(t, r.Body, map[string]any{})
		wantError(t, e.do(auth, "GET", userPath(sid, uid), nil), http.StatusNotFound, "not_found")
		wantError(t, e.do(auth, "PUT", authPath(sid, uid), map[string]string{"token": "123456"}), http.StatusNotFound, "not_found")
		list := e.do(auth, "GET", usersPath(sid), nil)
		wantBody(t, list.Body, map[string]any{"total": 0.0, "users": []any{}})
		// The id_in_service is free again.
		e.user(auth, sid, "alice@example.com", "+3725555555")
	})

	t.Run("the short documentation path shape serves list, get, create, start and check", func(t *testing.T) {
		e := newEnv(t)
		auth := e.account("acme")
		sid := e.service(auth, "Acme")
		short := "/v1/service/" + sid + "/users"

		created := e.do(auth, "POST", short, map[string]string{"id_in_service": "alice", "phone_number": "+3725555555"})
		wantStatus(t, created, http.StatusOK)
		wantBody(t, created.Body, map[string]any{"id": nonEmptyString, "ctime": ctimeValue, "id_in_service": "alice"})
		uid := created.Body["id"].(string)

		list := e.do(auth, "GET", short, nil)
		wantStatus(t, list, http.StatusOK)
		wantBody(t, list.Body, map[string]any{"total": 1.0, "users": []any{created.Body}})

		got := e.do(auth, "GET", short+"/"+uid, nil)
		wantStatus(t, got, http.StatusOK)
		wantBody(t, got.Body, created.Body)

		start := e.do(auth, "POST", short+"/"+uid+"/auth", map[string]string{"method": "sms"})
		wantStatus(t, start, http.StatusOK)
		wantBody(t, start.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})
		pin := pinOf(t, e.gw.message(t, start.Body["auth_id"].(string)).Text)

		wantCheck(t, e.do(auth, "PUT", short+"/"+uid+"/auth", map[string]string{"token": wrongPIN(pin, 0)}), false, "INVALID")
		wantCheck(t, e.do(auth, "PUT", short+"/"+uid+"/auth", map[string]string{"token": pin}), true, "VERIFIED")
	})
}
