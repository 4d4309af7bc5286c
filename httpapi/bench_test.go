package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/verityhq/verity"
)

// memSender keeps messages in memory by id, so that a benchmark measures
// Verity rather than a loopback HTTP round trip to a gateway.
type memSender struct {
	mu   sync.Mutex
	byID map[string]verity.Message
}

func newMemSender() *memSender { return &memSender{byID: map[string]verity.Message{}} }

// Send keeps m.
func (s *memSender) Send(_ context.Context, m verity.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[m.ID] = m
	return nil
}

func (s *memSender) pin(tb testing.TB, id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byID[id]
	if !ok {
		tb.Fatalf("no message %q", id)
	}
	return pinOf(tb, m.Text)
}

// serve sends one request through the router without decoding the answer.
func (e *env) serve(auth, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Service-Auth", auth)
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// benchUsers registers n users of one service, directly through the app
// to keep the setup short, and returns the credentials and ids.
func benchUsers(b *testing.B, e *env, n int) (auth, sid string, uids []string) {
	b.Helper()
	auth = e.account("acme")
	sid = e.service(auth, "Acme")
	acct, err := e.app.Authenticate(context.Background(), auth)
	if err != nil {
		b.Fatal(err)
	}
	uids = make([]string, n)
	for i := range n {
		u, err := e.app.CreateUser(context.Background(), acct, sid, fmt.Sprintf("user%d", i), "+3725555555")
		if err != nil {
			b.Fatal(err)
		}
		uids[i] = u.ID
	}
	return auth, sid, uids
}

// BenchmarkStart measures POST …/auth for distinct users, so that no send
// limit refuses one.
func BenchmarkStart(b *testing.B) {
	for _, tc := range []struct {
		name    string
		webhook bool
	}{
		{"in-memory sender", false},
		{"webhook sender to a loopback gateway", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b)
			if !tc.webhook {
				e.sender.set(newMemSender())
			}
			auth, sid, uids := benchUsers(b, e, b.N)
			body := []byte(`{"method": "sms"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if rec := e.serve(auth, "POST", authPath(sid, uids[i]), body); rec.Code != http.StatusOK {
					b.Fatalf("start = %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// pendingChecks gives b.N users a pending PIN each and returns the check
// bodies: the right PIN, or a wrong one when right is false.
func pendingChecks(b *testing.B, right bool) (e *env, auth, sid string, uids []string, bodies [][]byte) {
	b.Helper()
	e = newEnv(b)
	mem := newMemSender()
	e.sender.set(mem)
	auth, sid, uids = benchUsers(b, e, b.N)
	bodies = make([][]byte, b.N)
	for i, uid := range uids {
		rec := e.serve(auth, "POST", authPath(sid, uid), []byte(`{"method": "sms"}`))
		if rec.Code != http.StatusOK {
			b.Fatalf("start = %d %s", rec.Code, rec.Body)
		}
		r := checkResponse(b, "start", rec.Code, rec.Header(), rec.Body.Bytes())
		pin := mem.pin(b, r.Body["auth_id"].(string))
		if !right {
			pin = wrongPIN(pin, 0)
		}
		bodies[i] = []byte(`{"token": "` + pin + `"}`)
	}
	return e, auth, sid, uids, bodies
}

// BenchmarkCheck measures PUT …/auth against users that each have a fresh
// pending PIN, so that neither the once-only rule nor the try limits change
// what is measured: "right PIN" consumes one PIN per iteration, "wrong PIN"
// counts one failed try per iteration.
func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		name   string
		right  bool
		result string
	}{
		{"right PIN", true, `"result":"VERIFIED"`},
		{"wrong PIN", false, `"result":"INVALID"`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, auth, sid, uids, bodies := pendingChecks(b, tc.right)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rec := e.serve(auth, "PUT", authPath(sid, uids[i]), bodies[i])
				if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(tc.result)) {
					b.Fatalf("check = %d %s, want %s", rec.Code, rec.Body, tc.result)
				}
			}
		})
	}
}

// BenchmarkCheckParallel is BenchmarkCheck's right-PIN case with
// GOMAXPROCS×4 concurrent callers, where SQLite's group commit shares one
// fsync among many checks.
func BenchmarkCheckParallel(b *testing.B) {
	e, auth, sid, uids, bodies := pendingChecks(b, true)
	var next atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			rec := e.serve(auth, "PUT", authPath(sid, uids[i]), bodies[i])
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"VERIFIED"`)) {
				b.Errorf("check = %d %s", rec.Code, rec.Body)
				return
			}
		}
	})
}
