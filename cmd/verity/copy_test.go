package main_test

import (
	"encoding/base32"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/verityhq/verity/internal/pgtest"
	"github.com/verityhq/verity/totp"
)

// throwawayPostgres creates an empty database for one test and returns its
// URL; it is dropped at cleanup. The test is skipped without
// VERITY_TEST_POSTGRES_URL.
func throwawayPostgres(t *testing.T) string { return pgtest.NewDatabase(t, "verity_copy_") }

// TestStoreCopyToPostgres moves a live SQLite installation to PostgreSQL
// and serves it from there: the same credentials work, users and
// authenticator apps are intact, and a second copy changes nothing.
func TestStoreCopyToPostgres(t *testing.T) {
	pgURL := throwawayPostgres(t)
	dir := t.TempDir()
	s := startServer(t, dir, "--dev", "--dev-sink", "discard")
	auth := regexp.MustCompile(`export VERITY_AUTH='([^']+)'`).FindStringSubmatch(s.Stderr())[1]
	c := &http.Client{Timeout: 10 * time.Second}
	_, svc := call(t, c, s.URL, auth, "POST", "/v1/service/service", map[string]any{"name": "Moving", "fqdn": "moving.example"})
	sid := svc["id"].(string)
	base := s.URL + "/v1/service/service/" + sid
	_, alice := call(t, c, base, auth, "POST", "/users", map[string]any{"id_in_service": "alice", "phone_number": "+3725555555"})
	uid := alice["id"].(string)
	_, bob := call(t, c, base, auth, "POST", "/users", map[string]any{"id_in_service": "bob", "phone_number": "+3725555556"})
	bobID := bob["id"].(string)
	code := func(enrolment map[string]any) string {
		seed, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(enrolment["secret"].(string))
		p := totp.DefaultParams()
		return totp.Code(seed, totp.Step(time.Now(), p.Period), p)
	}
	// alice's app is active (with recovery codes); bob's enrolment is pending.
	_, aliceApp := call(t, c, base, auth, "POST", "/users/"+uid+"/totp", nil)
	status, confirmed := call(t, c, base, auth, "PUT", "/users/"+uid+"/totp", map[string]any{"token": code(aliceApp)})
	if status != 200 {
		t.Fatalf("confirm = %d %v", status, confirmed)
	}
	recovery := confirmed["recovery_codes"].([]any)
	_, bobApp := call(t, c, base, auth, "POST", "/users/"+bobID+"/totp", nil)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	sqlitePath := filepath.Join(dir, "verity-data", "verity.db")
	var summary map[string]map[string]int
	for round, want := range []string{"copied", "already_present"} {
		stdout, stderr, err := runVerity(t, dir, "store", "copy", "--from", sqlitePath, "--to", pgURL)
		if err != nil {
			t.Fatalf("store copy (round %d): %v\n%s", round+1, err, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &summary); err != nil {
			t.Fatalf("store copy printed %q, want a JSON summary", stdout)
		}
		for kind, n := range map[string]int{"accounts": 1, "services": 1, "users": 2, "factors": 2, "recovery_codes": 10} {
			if summary[kind][want] != n {
				t.Fatalf("round %d: %s %s = %d, want %d (summary %v)", round+1, kind, want, summary[kind][want], n, summary)
			}
		}
	}

	// The same data folder keeps the keys; only the database changes.
	pg := startServer(t, dir, "--dev", "--dev-sink", "discard", "--db", pgURL)
	base = pg.URL + "/v1/service/service/" + sid
	_, list := call(t, c, base, auth, "GET", "/users", nil)
	if list["total"] != float64(2) {
		t.Fatalf("users on PostgreSQL = %v, want 2", list)
	}
	// bob's sealed seed decrypts on the new database: his enrolment completes there.
	if status, body := call(t, c, base, auth, "PUT", "/users/"+bobID+"/totp", map[string]any{"token": code(bobApp)}); status != 200 {
		t.Fatalf("confirming the copied enrolment on PostgreSQL = %d %v", status, body)
	}
	// alice's recovery codes came along, still single-use.
	for i, want := range []bool{true, false} {
		_, res := call(t, c, base, auth, "PUT", "/users/"+uid+"/auth", map[string]any{"method": "recovery", "token": recovery[0]})
		if res["verified"] != want {
			t.Fatalf("recovery code use %d on PostgreSQL = %v, want verified %v", i+1, res, want)
		}
	}
}

// TestStoreCopySourceIsReadAsItIs: store copy used to create a --from that
// did not exist and migrate whatever it named, then copy nothing and exit
// 0. It now refuses a source that does not exist or holds no Verity
// schema, in one line, and leaves it as it was.
func TestStoreCopySourceIsReadAsItIs(t *testing.T) {
	t.Run("a SQLite --from that does not exist is refused by name, and nothing is created", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "verity-data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runVerity(t, dir, "store", "copy", "--from", "verity-data/verty.db", "--to", "copy.db")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("store copy = %v, want exit status 1; stderr:\n%s", err, stderr)
		}
		if got, want := strings.TrimSpace(stderr), "verity: open --from: no SQLite database at verity-data/verty.db"; got != want {
			t.Fatalf("store copy: stderr %q, want %q", got, want)
		}
		for _, d := range []string{dir, data} {
			if entries, _ := os.ReadDir(d); len(entries) != map[string]int{dir: 1, data: 0}[d] {
				t.Fatalf("store copy created files in %s: %v", d, entries)
			}
		}
	})

	t.Run("a PostgreSQL --from without Verity's schema is refused, and gets none", func(t *testing.T) {
		pgURL := throwawayPostgres(t)
		dir := t.TempDir()
		_, stderr, err := runVerity(t, dir, "store", "copy", "--from", pgURL, "--to", "copy.db")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("store copy = %v, want exit status 1; stderr:\n%s", err, stderr)
		}
		if got, want := strings.TrimSpace(stderr), "verity: open --from: the PostgreSQL database holds no Verity schema"; !strings.HasPrefix(got, want) || strings.Contains(got, "\n") {
			t.Fatalf("store copy: stderr %q, want one line starting %q", got, want)
		}
		if tables := pgtest.Tables(t, pgURL); tables != 0 {
			t.Fatalf("the --from database has %d tables after the copy, want none", tables)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("store copy created %d files in its folder, want none", len(entries))
		}
	})
}
