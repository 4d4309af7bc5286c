package sqlite_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
)

// TestOpenRefusesAReadOnlyDatabase: a database this process cannot write
// used to open, migrate and serve, and then fail every write. Open now
// refuses it, naming the file and saying it is read-only.
func TestOpenRefusesAReadOnlyDatabase(t *testing.T) {
	if !asUnprivileged(t) {
		return
	}
	for _, tc := range []struct {
		name string
		lock func(dir, path string) error
		// write is what the lock must stop, or the test proves nothing
		write func(dir, path string) error
	}{
		{"a file that cannot be written",
			func(_, path string) error { return os.Chmod(path, 0o444) },
			func(_, path string) error { return appendTo(path) }},
		{"a folder in which the -wal and -shm cannot be created",
			func(dir, _ string) error { return os.Chmod(dir, 0o555) },
			func(_, path string) error { return appendTo(path + "-wal") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "verity.db")
			db, err := sqlite.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Migrate(context.Background())
			if err := errors.Join(err, db.Close()); err != nil {
				t.Fatal(err)
			}
			if err := tc.lock(dir, path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) }) // for TempDir's removal
			if tc.write(dir, path) == nil {
				t.Fatal("the permission bits do not stop this process's writes; the test cannot work here")
			}

			db, err = sqlite.Open(path)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded on a database it cannot write, want it refused")
			}
			if msg := err.Error(); !strings.Contains(msg, "database "+path+" is read-only") || strings.Contains(msg, "\n") {
				t.Fatalf("Open = %q, want one line saying that %s is read-only", msg, path)
			}
			t.Logf("Open = %v", err)
		})
	}
}

// appendTo opens path for writing, creating it if need be, and closes it.
func appendTo(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// asUnprivileged reports whether the calling test is to run here. Root's
// writes are not stopped by permission bits, so as root it runs the test
// again as the user nobody, in a copy of the test binary that nobody can
// execute, takes that run's result as the test's, and returns false.
func asUnprivileged(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// go test keeps the binary in a folder only root may enter.
	dir, err := os.MkdirTemp("", "verity-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	copied := filepath.Join(dir, "sqlite.test")
	if err := os.WriteFile(copied, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copied, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("running as root, whose writes permission bits do not stop, and not allowed to run the test as nobody: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test run as the user nobody: %v\n%s", err, out)
	}
	t.Logf("ran as the user nobody:\n%s", out)
	return false
}

// TestOpenReadOnly: a store opened with Options.ReadOnly (a copy's source)
// reads a database this process cannot write, here one that a server
// still has open in a folder nobody may write, as another user's would
// be; writes are refused, and the server goes on writing.
func TestOpenReadOnly(t *testing.T) {
	if !asUnprivileged(t) {
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "verity.db")
	server, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := server.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := server.CreateAccount(ctx, &verity.Account{ID: "a1", Username: "acme", SecretHash: []byte("h")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"verity.db", "verity.db-wal", "verity.db-shm"} {
		if err := os.Chmod(filepath.Join(dir, name), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if appendTo(path+"-shm") == nil {
		t.Fatal("the permission bits do not stop this process's writes; the test cannot work here")
	}

	db, err := sqlite.OpenWith(path, sqlite.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("OpenWith(ReadOnly) = %v, want the database opened", err)
	}
	if err := db.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema = %v", err)
	}
	var accounts []string
	err = db.Export(ctx, func(r verity.Record) error {
		if r.Account != nil {
			accounts = append(accounts, r.Account.Username)
		}
		return nil
	})
	if err != nil || len(accounts) != 1 || accounts[0] != "acme" {
		t.Fatalf("Export = %v, accounts %v; want acme", err, accounts)
	}
	err = db.CreateAccount(ctx, &verity.Account{ID: "a2", Username: "beta", SecretHash: []byte("h")})
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("CreateAccount on the read-only store = %v, want it refused as read-only", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := server.CreateAccount(ctx, &verity.Account{ID: "a3", Username: "gamma", SecretHash: []byte("h")}); err != nil {
		t.Fatalf("the server's write after the read-only reader: %v", err)
	}
}
