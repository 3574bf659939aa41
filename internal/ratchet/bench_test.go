package ratchet_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/hush-chat/hush/internal/ratchet"
)

// Each protocol benchmark has a Raw twin that calls the same primitives
// directly, so the ratio is our overhead (docs/protocol.md §10).
//
// Steady state, per message: encrypt = 2 HMAC (chain step) + HKDF (message
// keys) + AES-256-GCM seal; decrypt = the same with open. With a DH step,
// the receiver also does 2 X25519, a key generation and 2 HKDF (root KDF).

var sizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1024}}

func BenchmarkEncryptDecrypt(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			alice, bob := newPair(b)
			bob.mustDecrypt(b, alice.encrypt(b, []byte("x")), []byte("x"))
			alice.mustDecrypt(b, bob.encrypt(b, []byte("y")), []byte("y"))
			pt := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				ct, err := alice.rec.Encrypt(pt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bob.rec.DecryptFrom(nil, "alice", bob.peerID, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncryptDecryptDHStep alternates directions so every message
// carries a new ratchet key.
func BenchmarkEncryptDecryptDHStep(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			alice, bob := newPair(b)
			bob.mustDecrypt(b, alice.encrypt(b, []byte("x")), []byte("x"))
			pt := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			from, to := bob, alice
			for b.Loop() {
				ct, err := from.rec.Encrypt(pt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := to.rec.DecryptFrom(nil, to.peer, to.peerID, ct); err != nil {
					b.Fatal(err)
				}
				from, to = to, from
			}
		})
	}
}

func rawMessage(ck []byte, pt, ad []byte, open bool, ct []byte) []byte {
	m := hmac.New(sha256.New, ck)
	m.Write([]byte{1})
	mk := m.Sum(nil)
	m = hmac.New(sha256.New, ck)
	m.Write([]byte{2})
	_ = m.Sum(nil)
	kn, _ := hkdf.Key(sha256.New, mk, nil, ratchet.MessageKeyInfo, 44)
	blk, _ := aes.NewCipher(kn[:32])
	g, _ := cipher.NewGCM(blk)
	if open {
		out, err := g.Open(nil, kn[32:], ct, ad)
		if err != nil {
			panic(err)
		}
		return out
	}
	return g.Seal(nil, kn[32:], pt, ad)
}

func BenchmarkRawEncryptDecryptPrimitives(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			ck := make([]byte, 32)
			pt := make([]byte, sz.n)
			ad := make([]byte, 120)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				ct := rawMessage(ck, pt, ad, false, nil)
				rawMessage(ck, nil, ad, true, ct)
			}
		})
	}
}

func BenchmarkRawEncryptDecryptDHStepPrimitives(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			ck := make([]byte, 32)
			pt := make([]byte, sz.n)
			ad := make([]byte, 120)
			peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
			mine, _ := ecdh.X25519().GenerateKey(rand.Reader)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				ct := rawMessage(ck, pt, ad, false, nil)
				// Receiver: DH with the current key, root KDF, then a new
				// key pair, DH again and the root KDF for the sending chain.
				dh, _ := mine.ECDH(peer.PublicKey())
				hkdf.Key(sha256.New, dh, ck, ratchet.RootInfo, 64)
				rawMessage(ck, nil, ad, true, ct)
				next, _ := ecdh.X25519().GenerateKey(rand.Reader)
				dh2, _ := next.ECDH(peer.PublicKey())
				hkdf.Key(sha256.New, dh2, ck, ratchet.RootInfo, 64)
			}
		})
	}
}

// BenchmarkForgedMessageWorstCase is the cost of one forged message with
// an unknown ratchet key and the largest allowed counters, against a
// record holding the full archive (docs/protocol.md §5.6).
func BenchmarkForgedMessageWorstCase(b *testing.B) {
	alice, bob := newPair(b)
	bob.mustDecrypt(b, alice.encrypt(b, []byte("x")), []byte("x"))
	for range ratchet.MaxArchivedSessions {
		initiate(b, alice, bob)
		bob.mustDecrypt(b, alice.encrypt(b, []byte("x")), []byte("x"))
	}
	// A normal message header with a fresh ratchet key, PN = N = 25,000.
	forged := []byte{1, 1}
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	forged = append(forged, k.PublicKey().Bytes()...)
	forged = append(forged, 0, 0, 0x61, 0xa8, 0, 0, 0x61, 0xa8)
	forged = append(forged, make([]byte, 32)...)
	for b.Loop() {
		if _, err := bob.decrypt(forged); err == nil {
			b.Fatal("forged message decrypted")
		}
	}
}
