package main_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDBFlagTakesAKeywordString: a libpq keyword/value string given to
// --db was taken for a SQLite file name; migrate created a file of that
// name and said the schema was up to date. It now goes to PostgreSQL,
// which here refuses the connection.
func TestDBFlagTakesAKeywordString(t *testing.T) {
	dir := t.TempDir()
	_, stderr, err := runVerity(t, dir, "migrate", "--db", "host=127.0.0.1 port=1 dbname=verity user=verity sslmode=disable")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("migrate = %v, want exit status 1; stderr:\n%s", err, stderr)
	}
	// The PostgreSQL store reports a refused connection as unavailable,
	// and the command line adds the cause: pgx dialled the keyword string's
	// host and port.
	line := strings.TrimSpace(stderr)
	if !strings.HasPrefix(line, "verity: database unavailable: ") || !strings.Contains(line, "127.0.0.1:1") || strings.Contains(line, "\n") {
		t.Fatalf("migrate: stderr %q, want one line: database unavailable, then the refused dial of 127.0.0.1:1", line)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("migrate created %q in its folder, want nothing", entries[0].Name())
	}
}
