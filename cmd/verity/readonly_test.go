package main_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeRefusesAReadOnlyDatabase: on a database file it cannot write,
// serve used to start, say it listened and answer 500 to every write. It
// now exits 1 with one line saying the file is read-only.
func TestServeRefusesAReadOnlyDatabase(t *testing.T) {
	dir, run := unprivilegedRunner(t)
	if _, stderr, err := run("account", "create", "acme"); err != nil {
		t.Fatalf("account create: %v\n%s", err, stderr)
	}
	db := filepath.Join(dir, "verity-data", "verity.db")
	if err := os.Chmod(db, 0o444); err != nil {
		t.Fatal(err)
	}
	// Not --dev, whose development account is a write at start.
	_, stderr, err := run("serve", "--addr", "127.0.0.1:0",
		"--sms-webhook", "http://127.0.0.1:9/sms", "--sms-webhook-secret", "0123456789abcdef")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("serve on a read-only database = %v, want exit status 1; stderr:\n%s", err, stderr)
	}
	const want = "verity: sqlite: database verity-data/verity.db is read-only: "
	if line := strings.TrimSpace(stderr); strings.Contains(line, "\n") || !strings.HasPrefix(line, want) {
		t.Fatalf("serve on a read-only database: stderr %q, want one line starting %q", stderr, want)
	}
}

// unprivilegedRunner returns a fresh folder and a function that runs verity
// in it, as this user or, when the tests run as root (whose writes
// permission bits do not stop), as the user nobody, who owns the folder.
// A command gets 30 s: one that starts serving instead of exiting is killed.
func unprivilegedRunner(t *testing.T) (string, func(args ...string) (string, string, error)) {
	t.Helper()
	dir := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		// t.TempDir's parent, and the binary's folder, only root may enter.
		var err error
		if dir, err = os.MkdirTemp("", "verity-unprivileged-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		for _, err := range []error{os.Chown(dir, 65534, 65534), os.Chmod(filepath.Dir(verityBin), 0o755)} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir, func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, verityBin, args...)
		cmd.Dir, cmd.Env = dir, cleanEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if errors.Is(err, syscall.EPERM) && cred != nil {
			t.Skipf("running as root, whose writes permission bits do not stop, and not allowed to run verity as nobody: %v", err)
		}
		return stdout.String(), stderr.String(), err
	}
}
