//go:build unix

// Unix only: the test sets the umask to prove the key file is 0600 whatever it is.

package secretbox_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/verityhq/verity/secretbox"
)

func TestKeyringFileRoundTrip(t *testing.T) {
	old := syscall.Umask(0) // a permissive umask must not widen the file's mode
	t.Cleanup(func() { syscall.Umask(old) })

	path := filepath.Join(t.TempDir(), "keys.json")
	k1 := mustKeyring(t, "k1")
	ad := []byte("totp-seed:user-1")
	id, ct, err := k1.Seal([]byte("seed"), ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	k2, err := k1.WithNewPrimary("k2", mustKey(t))
	if err != nil {
		t.Fatalf("WithNewPrimary: %v", err)
	}
	if err := secretbox.WriteKeyringFile(path, k2); err != nil {
		t.Fatalf("WriteKeyringFile: %v", err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if got, want := info.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("key file mode = %v, want %v", got, want)
	}

	// The file must be the documented format, readable by other tools.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	var raw struct {
		Primary string            `json:"primary"`
		Keys    map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("key file is not JSON: %v", err)
	}
	if got, want := raw.Primary, "k2"; got != want {
		t.Fatalf("file primary = %q, want %q", got, want)
	}
	for _, id := range []string{"k1", "k2"} {
		key, err := base64.StdEncoding.DecodeString(raw.Keys[id])
		if err != nil || len(key) != secretbox.KeySize {
			t.Fatalf("file key %s = %d bytes, %v; want %d bytes of base64", id, len(key), err, secretbox.KeySize)
		}
	}

	loaded, err := secretbox.LoadKeyringFile(path)
	if err != nil {
		t.Fatalf("LoadKeyringFile: %v", err)
	}
	if got, want := loaded.Primary(), "k2"; got != want {
		t.Fatalf("loaded Primary() = %q, want %q", got, want)
	}
	if got, err := loaded.Open(id, ct, ad); err != nil || string(got) != "seed" {
		t.Fatalf("loaded Open(k1 ciphertext) = %q, %v; want \"seed\"", got, err)
	}

	t.Run("rewriting replaces the file and leaves no temporary files", func(t *testing.T) {
		k3, err := loaded.WithNewPrimary("k3", mustKey(t))
		if err != nil {
			t.Fatalf("WithNewPrimary: %v", err)
		}
		if err := secretbox.WriteKeyringFile(path, k3); err != nil {
			t.Fatalf("WriteKeyringFile: %v", err)
		}
		again, err := secretbox.LoadKeyringFile(path)
		if err != nil {
			t.Fatalf("LoadKeyringFile: %v", err)
		}
		if got, want := strings.Join(again.KeyIDs(), ","), "k1,k2,k3"; got != want {
			t.Fatalf("KeyIDs() = %s, want %s", got, want)
		}
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		if len(entries) != 1 {
			t.Fatalf("directory holds %d entries after writes, want only the key file", len(entries))
		}
	})
}

func TestLoadKeyringFileRejectsBadFiles(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tt := range []struct {
		name    string
		content string
	}{
		{"an empty file", ""},
		{"invalid JSON", "{"},
		{"an unknown field", `{"primary":"k1","keys":{"k1":"` + key + `"},"extra":1}`},
		{"a misspelt keys field", `{"primary":"k1","key":{"k1":"` + key + `"}}`},
		{"trailing data", `{"primary":"k1","keys":{"k1":"` + key + `"}} {}`},
		{"a missing primary", `{"keys":{"k1":"` + key + `"}}`},
		{"a primary without its key", `{"primary":"k2","keys":{"k1":"` + key + `"}}`},
		{"invalid base64", `{"primary":"k1","keys":{"k1":"not base64!"}}`},
		{"a short key", `{"primary":"k1","keys":{"k1":"` + base64.StdEncoding.EncodeToString(make([]byte, 16)) + `"}}`},
		{"no keys", `{"primary":"k1","keys":{}}`},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			if _, err := secretbox.LoadKeyringFile(path); err == nil {
				t.Fatal("LoadKeyringFile succeeded, want error")
			}
		})
	}
	t.Run("a missing file is refused", func(t *testing.T) {
		if _, err := secretbox.LoadKeyringFile(filepath.Join(t.TempDir(), "absent.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadKeyringFile error = %v, want a not-exist error", err)
		}
	})
}

func TestWriteKeyringFileIntoMissingDirectoryFails(t *testing.T) {
	k := mustKeyring(t, "k1")
	if err := secretbox.WriteKeyringFile(filepath.Join(t.TempDir(), "nope", "keys.json"), k); err == nil {
		t.Fatal("WriteKeyringFile into a missing directory succeeded, want error")
	}
}
