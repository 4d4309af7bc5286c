package main_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandsOnAnInstallationNeedOne: run in the wrong folder, account
// list|delete, keys and migrate used to create an installation there (a
// data folder, a server secret, a seed keyring, an empty database) and
// report on it: no accounts, nothing to re-encrypt, schema up to date.
// They now refuse in one line and create nothing.
func TestCommandsOnAnInstallationNeedOne(t *testing.T) {
	commands := [][]string{
		{"account", "list"},
		{"account", "delete", "acme"},
		{"keys", "rotate"},
		{"keys", "reencrypt"},
		{"migrate"},
	}
	// refused runs args in an empty folder and checks that it exits 1 with
	// the one line want, leaving the folder empty.
	refused := func(t *testing.T, want string, args ...string) {
		t.Helper()
		dir := t.TempDir()
		_, stderr, err := runVerity(t, dir, args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("%s = %v, want exit status 1; stderr:\n%s", args, err, stderr)
		}
		if got := strings.TrimSpace(stderr); got != want {
			t.Fatalf("%s: stderr %q, want %q", args, got, want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s created %q in its folder, want nothing", args, entries[0].Name())
		}
	}

	for _, args := range commands {
		t.Run(strings.Join(args, " ")+" in a folder without an installation refuses and creates nothing", func(t *testing.T) {
			refused(t, "verity: no Verity installation in verity-data (no verity-data/verity.db): pass --data-dir or --db, "+
				"or run `verity serve` or `verity account create` once to create one", args...)
		})
		t.Run(strings.Join(args, " ")+" with a --db that does not exist refuses and creates nothing", func(t *testing.T) {
			refused(t, "verity: no SQLite database at verity.db: check --db, "+
				"or run `verity serve` or `verity account create` with it once to create it", append(args, "--db", "verity.db")...)
		})
	}

	t.Run("keys commands refuse an installation without its seed keyring, and generate none", func(t *testing.T) {
		dir := t.TempDir()
		createAccount(t, dir, "acme")
		keyring := filepath.Join(dir, "verity-data", "seed-keys.json")
		if err := os.Remove(keyring); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"keys", "rotate"}, {"keys", "reencrypt"}} {
			_, stderr, err := runVerity(t, dir, args...)
			if got, want := strings.TrimSpace(stderr), "verity: no seed keyring at verity-data/seed-keys.json: pass --seed-keys-file or --data-dir"; err == nil || got != want {
				t.Fatalf("%s = %v, stderr %q; want an error, %q", args, err, got, want)
			}
			if _, err := os.Stat(keyring); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s generated a seed keyring (stat: %v)", args, err)
			}
		}
	})

	t.Run("an installation made by account create serves them all", func(t *testing.T) {
		dir := t.TempDir()
		createAccount(t, dir, "acme")
		for _, args := range append(commands, []string{"account", "list"}) {
			if _, stderr, err := runVerity(t, dir, args...); err != nil {
				t.Fatalf("%s: %v\n%s", args, err, stderr)
			}
		}
	})

	t.Run("keys rotate --keyring-only rotates a copy of the keyring and opens no database", func(t *testing.T) {
		// docs/scaling.md, rotating the seed keyring with several nodes, step 1.
		dir := t.TempDir()
		createAccount(t, dir, "acme")
		keyring := filepath.Join(dir, "seed-keys.json")
		b, err := os.ReadFile(filepath.Join(dir, "verity-data", "seed-keys.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyring, b, 0o600); err != nil {
			t.Fatal(err)
		}
		elsewhere := t.TempDir() // no installation here: none is needed, none is made
		if _, stderr, err := runVerity(t, elsewhere, "keys", "rotate", "--keyring-only", "--seed-keys-file", keyring); err != nil {
			t.Fatalf("keys rotate --keyring-only: %v\n%s", err, stderr)
		}
		if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
			t.Fatalf("keys rotate --keyring-only created %q in its folder, want nothing", entries[0].Name())
		}
		var ring struct {
			Primary string            `json:"primary"`
			Keys    map[string]string `json:"keys"`
		}
		if b, err = os.ReadFile(keyring); err != nil || json.Unmarshal(b, &ring) != nil {
			t.Fatalf("the rotated keyring %q: %v", b, err)
		}
		if ring.Primary != "k2" || len(ring.Keys) != 2 {
			t.Fatalf("rotated keyring: primary %q, %d keys; want k2 and 2", ring.Primary, len(ring.Keys))
		}
	})
}
