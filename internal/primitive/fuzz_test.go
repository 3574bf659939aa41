package primitive_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/hush-chat/hush/internal/primitive"
)

// FuzzX25519 feeds arbitrary private seeds and public values to
// primitive.X25519. It must never panic; a public value of the wrong length
// must be an error other than ErrLowOrder, a 32-byte value must either give
// the same non-zero result as crypto/ecdh or fail with ErrLowOrder exactly
// when crypto/ecdh reports the all-zero output.
func FuzzX25519(f *testing.F) {
	mustHex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	basepoint := make([]byte, primitive.X25519Size)
	basepoint[0] = 9
	f.Add(make([]byte, 32), basepoint)
	f.Add(mustHex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
		mustHex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
	f.Add([]byte("seed"), make([]byte, 32))                                                            // u = 0, low order
	f.Add([]byte("seed"), append([]byte{1}, make([]byte, 31)...))                                      // u = 1, low order
	f.Add([]byte("seed"), bytes.Repeat([]byte{0xff}, 32))                                              // non-canonical
	f.Add([]byte("seed"), mustHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")) // u = p-1
	f.Add([]byte("seed"), []byte{})
	f.Add([]byte("seed"), make([]byte, 33))

	f.Fuzz(func(t *testing.T, seed, pub []byte) {
		scalar := seed
		if len(scalar) != primitive.X25519Size {
			h := sha256.Sum256(seed)
			scalar = h[:]
		}
		priv, err := ecdh.X25519().NewPrivateKey(scalar)
		if err != nil {
			t.Fatalf("NewPrivateKey: %v", err)
		}
		pubCopy := bytes.Clone(pub)
		got, err := primitive.X25519(priv, pub)
		if !bytes.Equal(pub, pubCopy) {
			t.Fatalf("X25519 modified its public input")
		}
		if len(pub) != primitive.X25519Size {
			if err == nil || errors.Is(err, primitive.ErrLowOrder) || got != nil {
				t.Fatalf("X25519 with %d-byte public value = (%x, %v), want a length error", len(pub), got, err)
			}
			return
		}

		p, perr := ecdh.X25519().NewPublicKey(pub)
		if perr != nil {
			t.Fatalf("crypto/ecdh rejected a 32-byte X25519 public value: %v", perr)
		}
		want, werr := priv.ECDH(p)
		if werr != nil {
			if !errors.Is(err, primitive.ErrLowOrder) || got != nil {
				t.Fatalf("low-order public value %x: got (%x, %v), want ErrLowOrder", pub, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("X25519(%x) failed: %v", pub, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("X25519(%x) = %x, crypto/ecdh gives %x", pub, got, want)
		}
		if isAllZero(got) {
			t.Fatalf("X25519(%x) returned the all-zero value", pub)
		}
	})
}
