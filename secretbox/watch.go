package secretbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FileKeyring serves the keyring stored in a key file and reloads it when
// the file changes, so that a rotation written by one process reaches
// running servers without a restart.
type FileKeyring struct {
	path     string
	interval time.Duration

	mu      sync.Mutex
	current *Keyring
	modTime time.Time
	size    int64
	checked time.Time
}

// OpenFileKeyring loads the key file at path. When create is true and the
// file does not exist, it first writes a new keyring with one fresh key.
func OpenFileKeyring(path string, create bool) (*FileKeyring, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && create {
		key, err := GenerateKey()
		if err != nil {
			return nil, err
		}
		k, err := NewKeyring("k1", map[string][]byte{"k1": key})
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("secretbox: create key folder: %w", err)
		}
		if err := WriteKeyringFile(path, k); err != nil {
			return nil, err
		}
	}
	f := &FileKeyring{path: path, interval: time.Second}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Keyring returns the current keyring, looking at the file's modification
// time at most once a second.
func (f *FileKeyring) Keyring() *Keyring {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= f.interval {
		f.reloadIfChanged()
	}
	return f.current
}

// Reload reads the file again now; on error the previous keyring stays.
func (f *FileKeyring) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *FileKeyring) reloadIfChanged() {
	f.checked = time.Now()
	st, err := os.Stat(f.path)
	if err != nil || (st.ModTime().Equal(f.modTime) && st.Size() == f.size) {
		return
	}
	f.load() // a half-written file cannot be seen: WriteKeyringFile renames atomically
}

func (f *FileKeyring) load() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("secretbox: %w", err)
	}
	k, err := LoadKeyringFile(f.path)
	if err != nil {
		return err
	}
	f.current, f.modTime, f.size, f.checked = k, st.ModTime(), st.Size(), time.Now()
	return nil
}

// Rotate adds a fresh key as the new primary, keeping the old keys for
// decryption, writes the file and returns the new primary's id.
func (f *FileKeyring) Rotate() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.load(); err != nil {
		return "", err
	}
	next := 1
	for _, id := range f.current.KeyIDs() {
		if n, err := strconv.Atoi(strings.TrimPrefix(id, "k")); err == nil && n >= next {
			next = n + 1
		}
	}
	key, err := GenerateKey()
	if err != nil {
		return "", err
	}
	id := "k" + strconv.Itoa(next)
	k, err := f.current.WithNewPrimary(id, key)
	if err != nil {
		return "", err
	}
	if err := WriteKeyringFile(f.path, k); err != nil {
		return "", err
	}
	return id, f.load()
}
