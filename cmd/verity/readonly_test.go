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

// TestStoreCopyFromAReadOnlySource: store copy refused a --from it could
// not write ("is read-only"), though it only reads it: a backup on
// read-only storage, another user's file. It now reads such a source,
// and where SQLite cannot read it without writing beside it (a database
// in WAL mode without its -shm, in a folder it cannot write) says to copy
// the file somewhere writable first.
func TestStoreCopyFromAReadOnlySource(t *testing.T) {
	dir, run := unprivilegedRunner(t)
	if _, stderr, err := run("account", "create", "acme"); err != nil {
		t.Fatalf("account create: %v\n%s", err, stderr)
	}
	data := filepath.Join(dir, "verity-data")
	db := filepath.Join(data, "verity.db")
	if err := os.Chmod(db, 0o444); err != nil {
		t.Fatal(err)
	}

	t.Run("a file that cannot be written is copied", func(t *testing.T) {
		stdout, stderr, err := run("store", "copy", "--from", "verity-data/verity.db", "--to", "copy.db")
		if err != nil {
			t.Fatalf("store copy from a read-only file: %v\n%s", err, stderr)
		}
		if !strings.Contains(stdout, `"accounts":{"copied":1,`) {
			t.Fatalf("store copy printed %q, want 1 account copied", stdout)
		}
	})

	t.Run("a folder that cannot be written, without the -shm, is refused saying to copy the file first", func(t *testing.T) {
		for _, name := range []string{"verity.db-wal", "verity.db-shm"} { // left by the read-only reader above
			if err := os.Remove(filepath.Join(data, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(data, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(data, 0o700) })
		_, stderr, err := run("store", "copy", "--from", "verity-data/verity.db", "--to", "copy2.db")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("store copy = %v, want exit status 1; stderr:\n%s", err, stderr)
		}
		line := strings.TrimSpace(stderr)
		for _, want := range []string{"verity: open --from: sqlite: database verity-data/verity.db cannot be read here",
			"verity.db-shm", "copy verity-data/verity.db to a folder this process can write"} {
			if strings.Contains(line, "\n") || !strings.Contains(line, want) {
				t.Fatalf("store copy: stderr %q, want one line saying %q", line, want)
			}
		}
		t.Logf("store copy: %s", line)
	})
}
