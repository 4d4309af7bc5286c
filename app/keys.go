package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/verityhq/verity"
)

// Keys holds the keys derived from the server secret. Each purpose gets its
// own key so that a value computed for one purpose is useless for another.
type Keys struct {
	master    []byte
	pinByUser *keyedMAC
	pinByPIN  *keyedMAC // the scheme before pinHashByUser (PINHashByPIN)
	cred      *keyedMAC
	recovery  *keyedMAC
}

// NewKeys derives the purpose keys from a master secret of at least 32 bytes.
func NewKeys(master []byte) (*Keys, error) {
	if len(master) < 32 {
		return nil, errors.New("server secret key must be at least 32 bytes")
	}
	return &Keys{
		master:    master,
		pinByUser: newKeyedMAC(derive(master, "verity pin hash v2")),
		pinByPIN:  newKeyedMAC(derive(master, "verity pin hash v1")),
		cred:      newKeyedMAC(derive(master, "verity api credential v1")),
		recovery:  newKeyedMAC(derive(master, "verity recovery code v1")),
	}, nil
}

// keyedMAC computes HMAC-SHA256 under one key with instances keyed once
// and reused: hmac.New hashes the key into its pads every time (two
// SHA-256 blocks and a handful of allocations), and a check computes two
// of these MACs, the typed code's and the API credential's.
type keyedMAC struct{ pool sync.Pool }

// macState is one pooled instance and the scratch space its message is
// framed in: a buffer of the caller's would escape to the heap through the
// hash.Hash interface, once per MAC.
type macState struct {
	mac hash.Hash
	msg []byte
}

// maxPooledMessage bounds the scratch space a pooled instance keeps: a
// longer message (no hot one is) gets a buffer of its own.
const maxPooledMessage = 1 << 10

func newKeyedMAC(key []byte) *keyedMAC {
	k := &keyedMAC{}
	k.pool.New = func() any {
		mac := hmac.New(sha256.New, key)
		// A new HMAC's first Reset rekeys its inner hash by hashing the
		// key's pad again, which leaves the hash's block buffer as the last
		// message left it; every later Reset restores a saved keyed state
		// over the whole of it. Reset now, so that sum's Reset after each
		// message is already a later one.
		mac.Reset()
		return &macState{mac: mac, msg: make([]byte, 0, 160)}
	}
	return k
}

// sum appends to dst the MAC of the parts, each but the first preceded by
// a zero byte: the framing every stored hash has had.
func (k *keyedMAC) sum(dst []byte, parts ...string) []byte {
	s := k.pool.Get().(*macState)
	dst = s.sum(dst, parts...)
	k.pool.Put(s)
	return dst
}

// sum is keyedMAC.sum on one instance, which it leaves keyed and clean.
func (s *macState) sum(dst []byte, parts ...string) []byte {
	msg := s.msg[:0]
	for i, p := range parts {
		if i > 0 {
			msg = append(msg, 0)
		}
		msg = append(msg, p...)
	}
	s.mac.Write(msg)
	dst = s.mac.Sum(dst)
	// The message holds a typed code or a credential: nothing of it stays
	// in the pool, neither in the scratch space (nor in the one it outgrew,
	// which holds its start) nor in the hash's own buffer, which Reset puts
	// back to the keyed state.
	clear(msg)
	if grown := cap(msg) != cap(s.msg); grown {
		clear(s.msg[:cap(s.msg)])
		if cap(msg) <= maxPooledMessage {
			s.msg = msg[:0]
		}
	}
	s.mac.Reset()
	return dst
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
	return k.pinByUser.sum(append(make([]byte, 0, verity.CodeHashSize), pinHashByUser), userID, code)
}

// PINHashByPIN is the stored form of a PIN before PINHash keyed it by the
// user: HMAC-SHA256 over the PIN's own id and the code. Servers still write
// it when told to (App.PINHashByPIN), so that nodes of an earlier release can
// check their PINs during a rolling upgrade.
func (k *Keys) PINHashByPIN(pinID, code string) []byte {
	return k.pinByPIN.sum(nil, pinID, code)
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
	return k.recovery.sum(nil, userID, code)
}

// CredentialHash is the stored form of an API password. API passwords are
// server-generated 256-bit secrets, so a keyed fast hash is safe and no slow
// KDF is needed per request.
func (k *Keys) CredentialHash(password string) []byte {
	return k.cred.sum(nil, password)
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
