package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/verityhq/verity"
)

// Keys holds the keys derived from the server secret. Each purpose gets its
// own key so that a value computed for one purpose is useless for another.
type Keys struct {
	master    []byte
	pinByUser []byte
	pinByPIN  []byte // the scheme before pinHashByUser (PINHashByPIN)
	cred      []byte
	recovery  []byte
}

// NewKeys derives the purpose keys from a master secret of at least 32 bytes.
func NewKeys(master []byte) (*Keys, error) {
	if len(master) < 32 {
		return nil, errors.New("server secret key must be at least 32 bytes")
	}
	return &Keys{
		master:    master,
		pinByUser: derive(master, "verity pin hash v2"),
		pinByPIN:  derive(master, "verity pin hash v1"),
		cred:      derive(master, "verity api credential v1"),
		recovery:  derive(master, "verity recovery code v1"),
	}, nil
}

func derive(master []byte, label string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// pinHashByUser tags a PIN hash keyed by the user (PINHash). A PIN hashed
// the earlier way has the 32-byte HMAC of PINHashByPIN alone, without a tag.
const pinHashByUser byte = 2

// PINHash is the stored form of a PIN: pinHashByUser, then HMAC-SHA256
// keyed by the server key over the user's id and the code
// (verity.CodeHashSize bytes). Keyed by the user rather than the PIN, a
// typed code can be hashed before its PIN is read, so that a store can
// compare and write in the statement that reads (verity.PINCheck.CodeHash):
// one round trip per check on PostgreSQL. Two PINs of one user with the
// same code hash alike; the hash still says nothing about the code without
// the server key.
func (k *Keys) PINHash(userID, code string) []byte {
	m := hmac.New(sha256.New, k.pinByUser)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum([]byte{pinHashByUser})
}

// PINHashByPIN is the stored form of a PIN before PINHash keyed it by the
// user: HMAC-SHA256 over the PIN's own id and the code. Servers still write
// it when told to (App.PINHashByPIN), so that nodes of an earlier release can
// check their PINs during a rolling upgrade.
func (k *Keys) PINHashByPIN(pinID, code string) []byte {
	m := hmac.New(sha256.New, k.pinByPIN)
	m.Write([]byte(pinID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// PINMatches reports, in constant time, whether code is p's code. typed is
// PINHash(p.UserID, code), which the caller has already computed for the
// check; a PIN stored under the earlier scheme is hashed again its own way.
func (k *Keys) PINMatches(p *verity.PIN, code string, typed []byte) bool {
	if len(p.Hash) == verity.CodeHashSize && p.Hash[0] == pinHashByUser {
		return hmac.Equal(typed, p.Hash)
	}
	return hmac.Equal(k.PINHashByPIN(p.ID, code), p.Hash)
}

// RecoveryCodeHash is the stored form of a recovery code, bound to its user.
func (k *Keys) RecoveryCodeHash(userID, code string) []byte {
	m := hmac.New(sha256.New, k.recovery)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// CredentialHash is the stored form of an API password. API passwords are
// server-generated 256-bit secrets, so a keyed fast hash is safe and no slow
// KDF is needed per request.
func (k *Keys) CredentialHash(password string) []byte {
	m := hmac.New(sha256.New, k.cred)
	m.Write([]byte(password))
	return m.Sum(nil)
}

// DevPassword is the development account's password, derived from the
// server key so that every `serve --dev` start can print it without storing it.
func (k *Keys) DevPassword() string {
	return base64.RawURLEncoding.EncodeToString(derive(k.master, "verity dev account password v1"))
}

// LoadKeyFile reads a hex-encoded server secret from path. When create is
// true and the file does not exist, it generates a new 256-bit secret and
// writes it with mode 0600 first.
func LoadKeyFile(path string, create bool) (*Keys, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := writeNewKey(path); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret key file: %w", err)
	}
	master, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("secret key file %s: not hex: %w", path, err)
	}
	return NewKeys(master)
}

func writeNewKey(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key folder: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	// O_EXCL: two processes starting at once must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create secret key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
