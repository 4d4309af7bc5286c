package secretbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/verityhq/verity/secretbox"
)

// mustKey returns a fresh random key or fails the test.
func mustKey(tb testing.TB) []byte {
	tb.Helper()
	key, err := secretbox.GenerateKey()
	if err != nil {
		tb.Fatalf("GenerateKey: %v", err)
	}
	return key
}

// mustKeyring returns a keyring with the given ids, fresh keys, and the first id primary.
func mustKeyring(tb testing.TB, ids ...string) *secretbox.Keyring {
	tb.Helper()
	keys := make(map[string][]byte, len(ids))
	for _, id := range ids {
		keys[id] = mustKey(tb)
	}
	k, err := secretbox.NewKeyring(ids[0], keys)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustKeyring(t, "k1")
	for _, plaintext := range [][]byte{nil, []byte("x"), []byte("12345678901234567890"), bytes.Repeat([]byte{0xff}, 1000)} {
		t.Run(fmt.Sprintf("%d bytes round-trip", len(plaintext)), func(t *testing.T) {
			ad := []byte("totp-seed:user-1")
			id, ct, err := k.Seal(plaintext, ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if got, want := id, "k1"; got != want {
				t.Fatalf("Seal key id = %q, want %q", got, want)
			}
			if got, want := len(ct), 12+len(plaintext)+16; got != want {
				t.Fatalf("len(ciphertext) = %d, want nonce+plaintext+tag = %d", got, want)
			}
			if len(plaintext) >= 8 && bytes.Contains(ct, plaintext) {
				t.Fatal("ciphertext contains the plaintext")
			}
			got, err := k.Open(id, ct, ad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Fatalf("Open = %x, want %x", got, plaintext)
			}
		})
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	k := mustKeyring(t, "k1")
	_, a, err := k.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	_, b, err := k.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext share a nonce or ciphertext")
	}
}

func TestOpenFailures(t *testing.T) {
	k := mustKeyring(t, "k1", "k2")
	ad := []byte("totp-seed:user-1")
	id, ct, err := k.Seal([]byte("seed"), ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	for _, tt := range []struct {
		name string
		id   string
		ct   []byte
		ad   []byte
		want error
	}{
		{"other associated data", id, ct, []byte("totp-seed:user-2"), secretbox.ErrDecrypt},
		{"missing associated data", id, ct, nil, secretbox.ErrDecrypt},
		{"a flipped nonce bit", id, flip(0), ad, secretbox.ErrDecrypt},
		{"a flipped ciphertext bit", id, flip(12), ad, secretbox.ErrDecrypt},
		{"a flipped tag bit", id, flip(len(ct) - 1), ad, secretbox.ErrDecrypt},
		{"a truncated ciphertext", id, ct[:len(ct)-1], ad, secretbox.ErrDecrypt},
		{"a ciphertext shorter than nonce and tag", id, ct[:27], ad, secretbox.ErrDecrypt},
		{"an empty ciphertext", id, nil, ad, secretbox.ErrDecrypt},
		{"the other key of the keyring", "k2", ct, ad, secretbox.ErrDecrypt},
		{"an unknown key id", "k9", ct, ad, secretbox.ErrUnknownKey},
		{"an empty key id", "", ct, ad, secretbox.ErrUnknownKey},
	} {
		t.Run("opening with "+tt.name+" fails", func(t *testing.T) {
			got, err := k.Open(tt.id, tt.ct, tt.ad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatalf("Open returned plaintext %q alongside an error", got)
			}
		})
	}
	t.Run("the unknown key error names the id", func(t *testing.T) {
		_, err := k.Open("k9", ct, ad)
		if err == nil || !strings.Contains(err.Error(), `"k9"`) {
			t.Fatalf("Open error = %v, want it to name \"k9\"", err)
		}
	})
}

func TestRotation(t *testing.T) {
	k1 := mustKeyring(t, "k1")
	ad := []byte("provider:twilio")
	oldID, oldCT, err := k1.Seal([]byte("old secret"), ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if k1.NeedsRotation(oldID) {
		t.Fatal("NeedsRotation(k1) = true before rotating")
	}

	k2, err := k1.WithNewPrimary("k2", mustKey(t))
	if err != nil {
		t.Fatalf("WithNewPrimary: %v", err)
	}
	if got, want := k2.Primary(), "k2"; got != want {
		t.Fatalf("Primary() = %q, want %q", got, want)
	}
	if got, want := k1.Primary(), "k1"; got != want {
		t.Fatalf("old keyring Primary() = %q after rotation, want %q (keyrings are immutable)", got, want)
	}
	if got, want := strings.Join(k2.KeyIDs(), ","), "k1,k2"; got != want {
		t.Fatalf("KeyIDs() = %s, want %s", got, want)
	}
	if !k2.NeedsRotation(oldID) {
		t.Fatal("NeedsRotation(k1) = false after rotating to k2")
	}

	got, err := k2.Open(oldID, oldCT, ad)
	if err != nil || string(got) != "old secret" {
		t.Fatalf("Open old ciphertext after rotation = %q, %v; want \"old secret\"", got, err)
	}
	newID, newCT, err := k2.Seal(got, ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if got, want := newID, "k2"; got != want {
		t.Fatalf("Seal after rotation used key %q, want %q", got, want)
	}
	if k2.NeedsRotation(newID) {
		t.Fatal("NeedsRotation(k2) = true for the primary")
	}
	if _, err := k1.Open(newID, newCT, ad); !errors.Is(err, secretbox.ErrUnknownKey) {
		t.Fatalf("old keyring Open(k2) error = %v, want ErrUnknownKey", err)
	}
}

func TestWithNewPrimaryExistingID(t *testing.T) {
	key1 := mustKey(t)
	k, err := secretbox.NewKeyring("k2", map[string][]byte{"k1": key1, "k2": mustKey(t)})
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	t.Run("promoting an existing id with its own key works", func(t *testing.T) {
		back, err := k.WithNewPrimary("k1", key1)
		if err != nil {
			t.Fatalf("WithNewPrimary: %v", err)
		}
		if got, want := back.Primary(), "k1"; got != want {
			t.Fatalf("Primary() = %q, want %q", got, want)
		}
	})
	t.Run("replacing an existing id's key is refused", func(t *testing.T) {
		if _, err := k.WithNewPrimary("k1", mustKey(t)); err == nil {
			t.Fatal("WithNewPrimary replaced k1's key, want error")
		}
	})
	t.Run("an invalid new id or key is refused", func(t *testing.T) {
		if _, err := k.WithNewPrimary("k:3", mustKey(t)); err == nil {
			t.Fatal("WithNewPrimary accepted id with a colon")
		}
		if _, err := k.WithNewPrimary("k3", make([]byte, 16)); err == nil {
			t.Fatal("WithNewPrimary accepted a 16-byte key")
		}
	})
}

func TestNewKeyringValidation(t *testing.T) {
	good := mustKey(t)
	for _, tt := range []struct {
		name    string
		primary string
		keys    map[string][]byte
	}{
		{"no keys", "k1", nil},
		{"a primary that is not in the keys", "k2", map[string][]byte{"k1": good}},
		{"an empty id", "", map[string][]byte{"": good}},
		{"an id with a colon", "a:b", map[string][]byte{"a:b": good}},
		{"an id with a space", "a b", map[string][]byte{"a b": good}},
		{"an id with a newline", "a\n", map[string][]byte{"a\n": good}},
		{"an id with non-ASCII", "ké", map[string][]byte{"ké": good}},
		{"an id of 65 bytes", strings.Repeat("k", 65), map[string][]byte{strings.Repeat("k", 65): good}},
		{"a 16-byte key", "k1", map[string][]byte{"k1": good[:16]}},
		{"a 33-byte key", "k1", map[string][]byte{"k1": append(bytes.Clone(good), 0)}},
		{"a nil key", "k1", map[string][]byte{"k1": nil}},
		{"an invalid non-primary key", "k1", map[string][]byte{"k1": good, "k2": good[:31]}},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			if _, err := secretbox.NewKeyring(tt.primary, tt.keys); err == nil {
				t.Fatal("NewKeyring succeeded, want error")
			}
		})
	}
}

func TestNewKeyringCopiesKeys(t *testing.T) {
	key := mustKey(t)
	k, err := secretbox.NewKeyring("k1", map[string][]byte{"k1": key})
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	id, ct, err := k.Seal([]byte("seed"), nil)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	clear(key) // a caller wiping its copy must not break the keyring
	if _, err := k.Open(id, ct, nil); err != nil {
		t.Fatalf("Open after the caller cleared its key slice: %v", err)
	}
}

func TestKeyringFormattingHidesKeys(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	k, err := secretbox.NewKeyring("k1", map[string][]byte{"k1": key})
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, arg := range []any{k, *k} {
			out := fmt.Sprintf(verb, arg)
			if strings.Contains(out, "171") || strings.Contains(strings.ToLower(out), "abab") {
				t.Fatalf("Sprintf(%q, %T) = %s, which shows key bytes", verb, arg, out)
			}
			if !strings.Contains(out, "k1") {
				t.Fatalf("Sprintf(%q, %T) = %s, want the key id", verb, arg, out)
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, "k1")
	_, ct, err := k.Seal([]byte("seed"), []byte("ad"))
	if err != nil {
		f.Fatalf("Seal: %v", err)
	}
	f.Add(ct, []byte("ad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ct, ad []byte) {
		// Arbitrary input must fail cleanly (or, for the seed itself, open), never panic.
		if pt, err := k.Open("k1", ct, ad); err == nil && string(pt) != "seed" {
			t.Fatalf("Open accepted a forged ciphertext: %q", pt)
		}
	})
}
