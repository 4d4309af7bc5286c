package secretbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxKeyringFileSize bounds what LoadKeyringFile reads; a real key file is a few kilobytes.
const maxKeyringFileSize = 1 << 20

// keyringFile is the JSON form of a key file: {"primary":"k2","keys":{"k1":"<base64>","k2":"<base64>"}}.
type keyringFile struct {
	Primary string            `json:"primary"`
	Keys    map[string]string `json:"keys"`
}

// LoadKeyringFile reads a JSON key file as written by WriteKeyringFile, with keys in standard base64.
func LoadKeyringFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: open key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("secretbox: read key file: %w", err)
	}
	if len(data) > maxKeyringFileSize {
		return nil, fmt.Errorf("secretbox: key file %s is larger than %d bytes", path, maxKeyringFileSize)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a misspelt field would otherwise silently drop keys
	var kf keyringFile
	if err := dec.Decode(&kf); err != nil {
		// Decoding errors name offsets, fields and types, at most one offending character.
		return nil, fmt.Errorf("secretbox: parse key file %s: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("secretbox: parse key file %s: data after the JSON object", path)
	}
	keys := make(map[string][]byte, len(kf.Keys))
	for id, enc := range kf.Keys {
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key file %s: key %q is not valid base64: %w", path, id, err)
		}
		keys[id] = key
	}
	k, err := NewKeyring(kf.Primary, keys)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyringFile writes k to path as JSON with mode 0600, atomically: readers see the old file or the new one, never a partial one.
func WriteKeyringFile(path string, k *Keyring) (err error) {
	kf := keyringFile{Primary: k.primary, Keys: make(map[string]string, len(k.keys))}
	for id, key := range k.keys {
		kf.Keys[id] = base64.StdEncoding.EncodeToString(key)
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("secretbox: encode key file: %w", err)
	}
	data = append(data, '\n')

	// The temporary file sits in the target directory so the rename stays on one file
	// system; os.CreateTemp creates it with mode 0600 before any key byte is written.
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("secretbox: create key file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("secretbox: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("secretbox: sync key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("secretbox: close key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("secretbox: replace key file: %w", err)
	}
	// Sync the directory so the rename itself survives a crash; losing a new primary
	// key after secrets were sealed under it would make them unreadable.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
