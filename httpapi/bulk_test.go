package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestBulkUserRegistration(t *testing.T) {
	e := newEnv(t)
	auth := e.account("acme")
	sid := e.service(auth, "Acme")
	bulk := usersPath(sid) + "/bulk"
	entries := func(from, n int) map[string]any {
		var users []map[string]any
		for i := from; i < from+n; i++ {
			users = append(users, map[string]any{"id_in_service": fmt.Sprintf("user%04d", i), "phone_number": fmt.Sprintf("+37255%06d", i)})
		}
		return map[string]any{"users": users}
	}

	t.Run("1000 users register in one request, in order", func(t *testing.T) {
		r := e.do(auth, "POST", bulk, entries(0, 1000))
		wantStatus(t, r, 200)
		users, _ := r.Body["users"].([]any)
		if r.Body["total"] != float64(1000) || len(users) != 1000 {
			t.Fatalf("bulk = total %v, %d users; want 1000", r.Body["total"], len(users))
		}
		if users[999].(map[string]any)["id_in_service"] != "user0999" {
			t.Fatalf("last user = %v, want user0999", users[999])
		}
		list := e.do(auth, "GET", usersPath(sid)+"?limit=1", nil)
		if list.Body["total"] != float64(1000) {
			t.Fatalf("list total = %v, want 1000", list.Body["total"])
		}
	})
	t.Run("a batch with one taken id_in_service creates nobody", func(t *testing.T) {
		batch := entries(999, 3) // user0999 exists
		wantError(t, e.do(auth, "POST", bulk, batch), 409, "conflict")
		if r := e.do(auth, "GET", usersPath(sid)+"?limit=1", nil); r.Body["total"] != float64(1000) {
			t.Fatalf("total after a refused batch = %v, want 1000", r.Body["total"])
		}
	})
	t.Run("an invalid entry names its index and creates nobody", func(t *testing.T) {
		batch := entries(2000, 3)
		batch["users"].([]map[string]any)[1]["phone_number"] = "12345"
		r := e.do(auth, "POST", bulk, batch)
		wantError(t, r, 422, "invalid")
		if msg, _ := r.Body["message"].(string); !strings.HasPrefix(msg, "users[1]: ") {
			t.Fatalf("message = %q, want it to name users[1]", msg)
		}
		if r := e.do(auth, "GET", usersPath(sid)+"?limit=1", nil); r.Body["total"] != float64(1000) {
			t.Fatalf("total after an invalid batch = %v, want 1000", r.Body["total"])
		}
	})
	t.Run("empty, oversized and repeated batches are refused", func(t *testing.T) {
		wantError(t, e.do(auth, "POST", bulk, map[string]any{"users": []any{}}), 422, "invalid")
		wantError(t, e.do(auth, "POST", bulk, entries(5000, 1001)), 422, "invalid")
		dup := entries(6000, 2)
		dup["users"].([]map[string]any)[1]["id_in_service"] = "user6000"
		wantError(t, e.do(auth, "POST", bulk, dup), 409, "conflict")
	})
	t.Run("another account's service is forbidden", func(t *testing.T) {
		wantError(t, e.do(e.account("other"), "POST", bulk, entries(7000, 1)), 403, "forbidden")
	})
}
