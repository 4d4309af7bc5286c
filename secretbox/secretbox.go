// Package secretbox encrypts small secrets at rest (TOTP seeds, provider credentials)
// with AES-256-GCM under a keyring whose key ids allow key rotation.
//
// A ciphertext is stored together with the id of the key that sealed it. New secrets
// are always sealed under the primary key; older keys stay in the keyring only to open
// what they sealed until it has been re-sealed (see NeedsRotation). Each Seal draws a
// fresh random 96-bit nonce, which keeps a single key safe for about 2^32 seals —
// far more than a verification server stores secrets.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeySize is the length in bytes of every key: AES-256.
const KeySize = 32

// nonceSize is the standard GCM nonce length, prepended to every ciphertext.
const nonceSize = 12

// maxKeyIDLen bounds key ids so they fit comfortably in a database column.
const maxKeyIDLen = 64

// ErrUnknownKey is returned by Open when the ciphertext's key id is not in the keyring.
var ErrUnknownKey = errors.New("secretbox: unknown key id")

// ErrDecrypt is returned by Open when a ciphertext is malformed, tampered with, or bound to other associated data.
var ErrDecrypt = errors.New("secretbox: message authentication failed")

// Keyring holds AES-256-GCM keys by id, one of them primary; it is immutable, safe for concurrent use, and made only by NewKeyring or LoadKeyringFile.
type Keyring struct {
	primary string
	keys    map[string][]byte
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns a keyring of keys (each KeySize bytes) that seals under primaryID; the key bytes are copied.
//
// Key ids must be 1–64 bytes of printable ASCII without spaces or colons, so they can
// be stored next to a ciphertext or used as a "id:" prefix unambiguously.
func NewKeyring(primaryID string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("secretbox: keyring has no keys")
	}
	k := &Keyring{
		primary: primaryID,
		keys:    make(map[string][]byte, len(keys)),
		aeads:   make(map[string]cipher.AEAD, len(keys)),
	}
	for id, key := range keys {
		if err := validateKeyID(id); err != nil {
			return nil, err
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("secretbox: key %q is %d bytes, want %d", id, len(key), KeySize)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %q: %w", id, err)
		}
		k.keys[id] = slices.Clone(key)
		k.aeads[id] = aead
	}
	if _, ok := k.keys[primaryID]; !ok {
		return nil, fmt.Errorf("secretbox: primary key id %q is not in the keyring", primaryID)
	}
	return k, nil
}

// validateKeyID reports why id cannot be used as a key id, if it cannot.
func validateKeyID(id string) error {
	if id == "" {
		return errors.New("secretbox: key id is empty")
	}
	if len(id) > maxKeyIDLen {
		return fmt.Errorf("secretbox: key id is longer than %d bytes", maxKeyIDLen)
	}
	if strings.ContainsRune(id, ':') {
		return fmt.Errorf("secretbox: key id %q contains a colon", id)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("secretbox: key id %q must be printable ASCII without spaces", id)
		}
	}
	return nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// GenerateKey returns a new random KeySize-byte key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secretbox: generate key: %w", err)
	}
	return key, nil
}

// Primary returns the id of the key new secrets are sealed under.
func (k *Keyring) Primary() string {
	return k.primary
}

// KeyIDs returns the ids of all keys in the keyring, sorted.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// NeedsRotation reports whether a secret sealed under keyID should be re-sealed under the primary key.
func (k *Keyring) NeedsRotation(keyID string) bool {
	return keyID != k.primary
}

// Seal encrypts plaintext under the primary key, binding it to associatedData, and returns the key id and nonce||ciphertext.
//
// associatedData should name where the secret belongs (for example "totp-seed:" plus
// the user id) so a ciphertext copied to another row fails to open.
func (k *Keyring) Seal(plaintext, associatedData []byte) (keyID string, ciphertext []byte, err error) {
	aead := k.aeads[k.primary]
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, fmt.Errorf("secretbox: generate nonce: %w", err)
	}
	return k.primary, aead.Seal(out, out, plaintext, associatedData), nil
}

// Open decrypts a ciphertext produced by Seal under keyID with the same associatedData.
func (k *Keyring) Open(keyID string, ciphertext, associatedData []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	if len(ciphertext) < nonceSize+aead.Overhead() {
		return nil, ErrDecrypt
	}
	plaintext, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], associatedData)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// WithNewPrimary returns a new keyring that adds key under id and makes it primary, keeping every old key for opening.
//
// Promoting an id already in the keyring is allowed only with the same key bytes:
// replacing a key would make everything it sealed unreadable.
func (k *Keyring) WithNewPrimary(id string, key []byte) (*Keyring, error) {
	if old, ok := k.keys[id]; ok && subtle.ConstantTimeCompare(old, key) != 1 {
		return nil, fmt.Errorf("secretbox: key id %q is already in the keyring with a different key", id)
	}
	keys := make(map[string][]byte, len(k.keys)+1)
	for oldID, oldKey := range k.keys {
		keys[oldID] = oldKey
	}
	keys[id] = key
	return NewKeyring(id, keys)
}

// String describes the keyring by key ids only, so printing or logging it never reveals key bytes.
func (k Keyring) String() string {
	return fmt.Sprintf("secretbox.Keyring{primary: %q, keys: %q}", k.primary, k.KeyIDs())
}

// GoString is String for the %#v verb, which would otherwise print the key bytes.
func (k Keyring) GoString() string {
	return k.String()
}
