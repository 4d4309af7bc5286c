package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// verityBin is the binary under test, built once by TestMain.
var verityBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "verity-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	verityBin = filepath.Join(dir, "verity")
	build := exec.Command("go", "build", "-race", "-o", verityBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build verity:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runVerity runs a verity command to completion in dir and returns its
// stdout and stderr.
func runVerity(tb testing.TB, dir string, args ...string) (string, string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hung command must not hang the run
	defer cancel()
	cmd := exec.CommandContext(ctx, verityBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// server is one running `verity serve` process.
type server struct {
	tb      testing.TB
	cmd     *exec.Cmd
	URL     string
	mu      sync.Mutex
	stderr  bytes.Buffer
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // set before exited is closed
}

// startServer starts `verity serve --addr 127.0.0.1:0 args…` in dir and
// waits until it listens. It is stopped (SIGTERM) at cleanup.
func startServer(tb testing.TB, dir string, args ...string) *server {
	tb.Helper()
	cmd := exec.Command(verityBin, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &server{tb: tb, cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "verity listening" {
				addr <- entry.Addr
			}
		}
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-s.exited:
		tb.Fatalf("verity serve exited before listening (%v):\n%s", s.waitErr, s.Stderr())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		tb.Fatalf("verity serve did not listen within 60 s:\n%s", s.Stderr())
	}
	tb.Cleanup(func() { s.Stop() })
	return s
}

// Stderr returns what the server logged so far.
func (s *server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop sends SIGTERM and waits for a graceful exit; it returns the exit error.
func (s *server) Stop() error {
	select {
	case <-s.exited:
		return s.waitErr
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("no exit within 30 s of SIGTERM")
	}
}

// Kill ends the server with SIGKILL: no graceful anything.
func (s *server) Kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// call sends one JSON request and decodes the JSON object it answers.
func call(tb testing.TB, client *http.Client, base, auth, method, path string, body any) (int, map[string]any) {
	tb.Helper()
	status, out, err := tryCall(client, base, auth, method, path, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	return status, out
}

// tryCall is call that returns transport errors instead of failing.
func tryCall(client *http.Client, base, auth, method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("X-Service-Auth", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("status %d, body not a JSON object: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, nil
}

// createAccount runs `verity account create` and returns the X-Service-Auth value.
func createAccount(tb testing.TB, dir, name string, dbArgs ...string) string {
	tb.Helper()
	stdout, stderr, err := runVerity(tb, dir, append([]string{"account", "create", name}, dbArgs...)...)
	if err != nil {
		tb.Fatalf("account create: %v\n%s", err, stderr)
	}
	var creds map[string]string
	if err := json.Unmarshal([]byte(stdout), &creds); err != nil || strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
		tb.Fatalf("account create printed %q, want exactly one JSON object", stdout)
	}
	return creds["username"] + ":" + creds["password"]
}

// cleanEnv is the test's environment without VERITY_ settings, so that a
// developer's own configuration cannot leak into the processes under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VERITY_") {
			env = append(env, kv)
		}
	}
	return env
}
