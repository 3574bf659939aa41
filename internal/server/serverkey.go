package server

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hush-chat/hush/internal/keys"
)

const (
	serverKeyFile = "server.key"
	// powSecretLabel derives the PoW HMAC key from the server key, so the
	// data directory holds one secret, not two (docs/protocol.md §9.2).
	powSecretLabel = "Hush-PoW-HMAC-v1"
)

// loadOrCreateKey reads the server key at path, or makes a new key and
// writes it 0600 if the file does not exist. A file that exists but does
// not parse is an error, never replaced: clients have pinned the key.
// Several nodes starting at once on a shared directory all end up with
// the one key whose file was linked into place first. created reports
// whether this call made the key.
func loadOrCreateKey(path string) (k keys.ServerPrivate, created bool, err error) {
	for range 2 {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			k, err := keys.ParseServerPrivate(b)
			if err != nil {
				return keys.ServerPrivate{}, false, fmt.Errorf("server: %s is not a server key (%v); restore it from a backup: clients have pinned it", path, err)
			}
			return k, false, nil
		case !errors.Is(err, fs.ErrNotExist):
			return keys.ServerPrivate{}, false, fmt.Errorf("server: read server key: %w", err)
		}
		k, err = keys.GenerateServer()
		if err != nil {
			return keys.ServerPrivate{}, false, err
		}
		err = writeFileAtomic(path, k.Bytes(), 0o600)
		if err == nil {
			return k, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return keys.ServerPrivate{}, false, fmt.Errorf("server: write server key: %w", err)
		}
		// Another process created it meanwhile: use that one.
	}
	return keys.ServerPrivate{}, false, fmt.Errorf("server: server key %s keeps appearing and disappearing", path)
}

// writeFileAtomic writes a temporary file, syncs it and links it into
// place, so a crash leaves either no key or the whole key, and a key that
// appeared meanwhile (another process) is not overwritten.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// powSecret derives the proof-of-work HMAC key from the server key.
func powSecret(k keys.ServerPrivate) ([]byte, error) {
	return hkdf.Key(sha256.New, k.Seed(), nil, powSecretLabel, sha256.Size)
}
