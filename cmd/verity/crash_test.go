package main_test

import (
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSQLiteCrashLosesNothingAcknowledged kills a SQLite server with
// SIGKILL in the middle of a stream of writes and checks, after a restart
// on the same files, that every write it acknowledged is there: group
// commit answers a write only after the commit that holds it. Both
// durability modes must pass: --sqlite-sync normal skips the fsync, but the
// write is in the operating system's hands before it is acknowledged.
func TestSQLiteCrashLosesNothingAcknowledged(t *testing.T) {
	for _, mode := range []string{"full", "normal"} {
		t.Run("--sqlite-sync "+mode, func(t *testing.T) { crashMidStream(t, "--sqlite-sync", mode) })
	}
}

func crashMidStream(t *testing.T, flags ...string) {
	dir := t.TempDir()
	serve := append([]string{"--dev", "--dev-sink", "discard"}, flags...)
	s := startServer(t, dir, serve...)
	auth := regexp.MustCompile(`export VERITY_AUTH='([^']+)'`).FindStringSubmatch(s.Stderr())[1]
	client := &http.Client{Timeout: 10 * time.Second}
	status, svc := call(t, client, s.URL, auth, "POST", "/v1/service/service", map[string]any{"name": "Crash", "fqdn": "crash.example"})
	if status != 200 {
		t.Fatalf("create service = %d %v", status, svc)
	}
	sid := svc["id"].(string)

	var (
		mu    sync.Mutex
		acked = map[string]string{} // user id → id_in_service
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	const total = 600
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				name := fmt.Sprintf("user%04d", i)
				status, body, err := tryCall(client, s.URL, auth, "POST", "/v1/service/service/"+sid+"/users",
					map[string]any{"id_in_service": name, "phone_number": fmt.Sprintf("+37255%06d", i)})
				if err != nil {
					return // the server is gone
				}
				if status == 200 {
					mu.Lock()
					acked[body["id"].(string)] = name
					n := len(acked)
					mu.Unlock()
					if n == total/3 {
						go s.Kill()
					}
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < total/3 || len(acked) == total {
		t.Fatalf("%d of %d creations acknowledged: the kill did not land mid-stream", len(acked), total)
	}

	again := startServer(t, dir, serve...)
	for id, name := range acked {
		status, body := call(t, client, again.URL, auth, "GET", "/v1/service/service/"+sid+"/users/"+id, nil)
		if status != 200 || body["id_in_service"] != name {
			t.Fatalf("acknowledged user %s (%s) after the crash: %d %v", id, name, status, body)
		}
	}
	t.Logf("%d acknowledged creations all survived SIGKILL", len(acked))
}
