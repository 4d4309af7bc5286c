package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// drainSetup is a server whose SMS gateway holds each message until
// released, with one start waiting on it: a request in flight.
type drainSetup struct {
	s       *server
	release func()
	started chan error // the in-flight start's outcome: nil for a 200
}

// startRequestInFlight starts it with --shutdown-timeout shutdownTimeout.
func startRequestInFlight(t *testing.T, shutdownTimeout string) *drainSetup {
	t.Helper()
	arrived := make(chan struct{}, 1)
	hold := make(chan struct{})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(gw.Close)
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before gw.Close, which waits for the held request

	dir := t.TempDir()
	auth := createAccount(t, dir, "acme")
	s := startServer(t, dir, "--sms-webhook", gw.URL+"/sms", "--sms-webhook-secret", "0123456789abcdef-drain-test",
		"--sms-webhook-timeout", "25s", "--shutdown-timeout", shutdownTimeout)
	c := http.DefaultClient
	_, svc := call(t, c, s.URL, auth, "POST", "/v1/service/service", map[string]any{"name": "Drain", "fqdn": "drain.example"})
	sid, _ := svc["id"].(string)
	_, user := call(t, c, s.URL, auth, "POST", "/v1/service/service/"+sid+"/users", map[string]any{"id_in_service": "a", "phone_number": "+3725555555"})
	uid, _ := user["id"].(string)

	d := &drainSetup{s: s, release: release, started: make(chan error, 1)}
	go func() {
		status, body, err := tryCall(c, s.URL, auth, "POST", "/v1/service/service/"+sid+"/users/"+uid+"/auth", map[string]any{"method": "sms"})
		if err == nil && status != 200 {
			err = fmt.Errorf("start answered %d %v", status, body)
		}
		d.started <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatalf("the start's message never reached the gateway:\n%s", s.Stderr())
	}
	return d
}

// waitForFailedExit waits up to within for the server to exit, after
// what (for the message), and checks that its exit status is not 0.
func (d *drainSetup) waitForFailedExit(t *testing.T, within time.Duration, what string) {
	t.Helper()
	select {
	case <-d.s.exited:
	case <-time.After(within):
		t.Fatalf("the server still drains %s after %s:\n%s", within, what, d.s.Stderr())
	}
	var exit *exec.ExitError
	if !errors.As(d.s.waitErr, &exit) || exit.ExitCode() == 0 {
		t.Errorf("exit = %v, want a non-zero status", d.s.waitErr)
	}
}

// signalAndWaitForDrain sends SIGTERM and waits until the server says it drains.
func (d *drainSetup) signalAndWaitForDrain(t *testing.T) {
	t.Helper()
	d.s.cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.s.Stderr(), "shutting down: finishing in-flight requests"); {
		if time.Now().After(deadline) {
			t.Fatalf("no drain logged after SIGTERM:\n%s", d.s.Stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSecondSignalStopsTheDrain: one SIGTERM (or SIGINT) lets the requests
// in flight finish, as before; a second one during that drain stops the
// server at once, with a non-zero exit and a line saying requests were cut.
func TestSecondSignalStopsTheDrain(t *testing.T) {
	t.Run("after one signal a request in flight finishes and the server exits cleanly", func(t *testing.T) {
		d := startRequestInFlight(t, "60s")
		d.signalAndWaitForDrain(t)
		d.release()
		if err := <-d.started; err != nil {
			t.Fatalf("the start in flight during the drain: %v", err)
		}
		select {
		case <-d.s.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("no exit after the drain:\n%s", d.s.Stderr())
		}
		if d.s.waitErr != nil || !strings.Contains(d.s.Stderr(), `"msg":"stopped"`) {
			t.Fatalf("exit = %v, want a clean stop:\n%s", d.s.waitErr, d.s.Stderr())
		}
	})

	t.Run("a second signal during the drain stops at once, cutting the request", func(t *testing.T) {
		d := startRequestInFlight(t, "60s")
		d.signalAndWaitForDrain(t)
		d.s.cmd.Process.Signal(syscall.SIGTERM)
		// The gateway holds the start for 25 s, the drain allows 60 s.
		d.waitForFailedExit(t, 10*time.Second, "a second SIGTERM")
		if !strings.Contains(d.s.Stderr(), "requests in flight were cut") {
			t.Errorf("no line says requests in flight were cut:\n%s", d.s.Stderr())
		}
		if err := <-d.started; err == nil {
			t.Errorf("the start in flight was answered 200, want its connection cut")
		}
	})
}

// TestDrainThatTimesOutSaysSo: a drain that ran out of --shutdown-timeout
// exited with only "shutdown: context deadline exceeded", and nothing said
// that requests in flight were cut. A warning now says so, with how many,
// as after a second signal, and so does the exit message.
func TestDrainThatTimesOutSaysSo(t *testing.T) {
	d := startRequestInFlight(t, "1s")
	d.signalAndWaitForDrain(t)
	// The gateway holds the start for 25 s, the drain allows 1 s.
	d.waitForFailedExit(t, 15*time.Second, "SIGTERM with --shutdown-timeout 1s")
	stderr := d.s.Stderr()
	var warning map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "WARN" && strings.Contains(fmt.Sprint(rec["msg"]), "requests in flight were cut") {
			warning = rec
		}
	}
	if warning == nil {
		t.Fatalf("no warning says requests in flight were cut:\n%s", stderr)
	}
	if got, want := warning["msg"], "drain timed out: stopped, requests in flight were cut"; got != want {
		t.Errorf("warning %q, want %q", got, want)
	}
	if got, want := warning["in_flight"], 1.0; got != want {
		t.Errorf("warning's in_flight = %v, want %v", got, want)
	}
	if want := "verity: the drain timed out after 1s (--shutdown-timeout): requests in flight were cut (1)"; !strings.Contains(stderr, want) {
		t.Errorf("no exit message %q:\n%s", want, stderr)
	}
	if err := <-d.started; err == nil {
		t.Errorf("the start in flight was answered 200, want its connection cut")
	}
}

// TestDrainShorterThanAWebhookSendWarns: a drain that may end before a
// start's SMS send is allowed to (the send's own time limit) is said at
// start-up, and only then.
func TestDrainShorterThanAWebhookSendWarns(t *testing.T) {
	const warning = "--shutdown-timeout is not above --sms-webhook-timeout"
	for _, tc := range []struct {
		shutdown, send string
		warns          bool
	}{
		{"20s", "25s", true},
		{"25s", "25s", true},
		{"26s", "25s", false},
		{"20s", "5s", false}, // the defaults
	} {
		t.Run(tc.shutdown+" beside "+tc.send, func(t *testing.T) {
			s := startServer(t, t.TempDir(), "--dev", "--sms-webhook", "http://127.0.0.1:9/sms",
				"--sms-webhook-secret", strings.Repeat("k", 32),
				"--shutdown-timeout", tc.shutdown, "--sms-webhook-timeout", tc.send)
			if got := strings.Contains(s.Stderr(), warning); got != tc.warns {
				t.Fatalf("warned = %v, want %v:\n%s", got, tc.warns, s.Stderr())
			}
		})
	}
	t.Run("no webhook", func(t *testing.T) {
		s := startServer(t, t.TempDir(), "--dev", "--shutdown-timeout", "1s", "--sms-webhook-timeout", "25s")
		if strings.Contains(s.Stderr(), warning) {
			t.Fatalf("warned without a webhook:\n%s", s.Stderr())
		}
	})
}
