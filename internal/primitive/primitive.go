// Package primitive is the single place where Hush calls the standard
// library's cryptographic primitives. Every protocol package goes through
// these functions, so the known-answer tests in this package (RFC 7748,
// RFC 8032, Wycheproof) exercise the primitives exactly as Hush calls them.
//
// Nothing here implements a primitive; each function composes crypto/...
// and fixes the parameters docs/protocol.md §1 chooses.
package primitive

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sizes fixed by docs/protocol.md §1.
const (
	X25519Size   = 32 // public keys, private keys and shared secrets
	AEADKeySize  = 32 // AES-256-GCM key
	AEADNonceLen = 12 // AES-GCM standard nonce
	AEADTagSize  = 16
	HashSize     = sha256.Size
)

// ErrLowOrder is returned when an X25519 exchange produces the all-zero
// output, i.e. the peer's point has low order (RFC 7748 §6.1).
var ErrLowOrder = errors.New("primitive: X25519 result is all zero (low-order point)")

// ErrAEAD is returned when AEAD authentication fails.
var ErrAEAD = errors.New("primitive: message authentication failed")

// X25519 computes the shared secret between priv and the 32-byte public
// value pub, rejecting the all-zero result.
func X25519(priv *ecdh.PrivateKey, pub []byte) ([]byte, error) {
	if len(pub) != X25519Size {
		return nil, fmt.Errorf("primitive: X25519 public value is %d bytes, want %d", len(pub), X25519Size)
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	out, err := priv.ECDH(p)
	if err != nil {
		// crypto/ecdh reports the all-zero output as an error itself.
		return nil, ErrLowOrder
	}
	return out, nil
}

// Sign signs msg with an Ed25519 private key (RFC 8032, pure Ed25519).
func Sign(priv ed25519.PrivateKey, msg []byte) []byte {
	return ed25519.Sign(priv, msg)
}

// Verify reports whether sig is a valid Ed25519 signature of msg by pub.
// It never panics on malformed lengths.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, msg, sig)
}

// HKDF is HKDF-SHA256 (RFC 5869) extract-then-expand.
func HKDF(secret, salt []byte, info string, length int) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, salt, info, length)
}

// HMAC is HMAC-SHA256.
func HMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// HMACSHA1 is HMAC-SHA1. Only the TURN REST credential format
// (docs/protocol.md §13.3) uses it, because coturn and every WebRTC stack
// fix it there; nothing of Hush's own protocol may.
func HMACSHA1(key, msg []byte) []byte {
	m := hmac.New(sha1.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// newGCM returns AES-256-GCM under key.
func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != AEADKeySize {
		return nil, fmt.Errorf("primitive: AEAD key is %d bytes, want %d", len(key), AEADKeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Seal encrypts and authenticates plaintext with AES-256-GCM, appending the
// result to dst.
func Seal(dst, key, nonce, plaintext, ad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != g.NonceSize() {
		return nil, fmt.Errorf("primitive: nonce is %d bytes, want %d", len(nonce), g.NonceSize())
	}
	return g.Seal(dst, nonce, plaintext, ad), nil
}

// Open authenticates and decrypts ciphertext with AES-256-GCM. Any failure
// is ErrAEAD.
func Open(dst, key, nonce, ciphertext, ad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != g.NonceSize() {
		return nil, fmt.Errorf("primitive: nonce is %d bytes, want %d", len(nonce), g.NonceSize())
	}
	out, err := g.Open(dst, nonce, ciphertext, ad)
	if err != nil {
		return nil, ErrAEAD
	}
	return out, nil
}

// Wipe overwrites b with zeros. Go cannot guarantee no other copy exists,
// but wiping the copies we own shortens a secret's life in memory.
func Wipe(b []byte) {
	clear(b)
}
