package pqxdh_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
)

// The raw benchmarks call exactly the primitives a PQXDH run is made of,
// straight on the standard library, so BenchmarkInitiate/BenchmarkRaw…
// is our overhead ratio (docs/protocol.md §10).

func BenchmarkInitiate(b *testing.B) {
	alice, _ := ratchettest.NewDevice("alice", 1, 0)
	bob, _ := ratchettest.NewDevice("bob", 1, 1)
	otk, kem := bob.AnyOneTime()
	bundle, _ := bob.Bundle(otk, kem)
	for b.Loop() {
		if _, _, err := pqxdh.Initiate("alice", alice.Identity, bundle); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRespond(b *testing.B) {
	alice, _ := ratchettest.NewDevice("alice", 1, 0)
	bob, _ := ratchettest.NewDevice("bob", 1, 1)
	otk, kem := bob.AnyOneTime()
	bundle, _ := bob.Bundle(otk, kem)
	_, init, err := pqxdh.Initiate("alice", alice.Identity, bundle)
	if err != nil {
		b.Fatal(err)
	}
	r := bob.Responder()
	for b.Loop() {
		if _, err := r.Respond("alice", init); err != nil {
			b.Fatal(err)
		}
	}
}

type rawKeys struct {
	signPub            ed25519.PublicKey
	spkSig, kemSig     []byte
	spkMsg, kemMsg     []byte
	ikA, ikB, spk, opk *ecdh.PrivateKey
	ek                 *ecdh.PrivateKey
	dk                 *mlkem.DecapsulationKey1024
	ek1024             *mlkem.EncapsulationKey1024
	ct                 []byte
}

func newRawKeys(b *testing.B) *rawKeys {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	k := &rawKeys{signPub: pub}
	gen := func() *ecdh.PrivateKey { p, _ := ecdh.X25519().GenerateKey(rand.Reader); return p }
	k.ikA, k.ikB, k.spk, k.opk, k.ek = gen(), gen(), gen(), gen(), gen()
	k.dk, _ = mlkem.GenerateKey1024()
	k.ek1024 = k.dk.EncapsulationKey()
	k.spkMsg = append([]byte("label"), k.spk.PublicKey().Bytes()...)
	k.kemMsg = append([]byte("label"), k.dk.EncapsulationKey().Bytes()...)
	k.spkSig = ed25519.Sign(priv, k.spkMsg)
	k.kemSig = ed25519.Sign(priv, k.kemMsg)
	_, k.ct = k.dk.EncapsulationKey().Encapsulate()
	return k
}

func BenchmarkRawInitiatePrimitives(b *testing.B) {
	k := newRawKeys(b)
	for b.Loop() {
		ed25519.Verify(k.signPub, k.spkMsg, k.spkSig)
		ed25519.Verify(k.signPub, k.kemMsg, k.kemSig)
		ek, _ := ecdh.X25519().GenerateKey(rand.Reader)
		dh1, _ := k.ikA.ECDH(k.spk.PublicKey())
		dh2, _ := ek.ECDH(k.ikB.PublicKey())
		dh3, _ := ek.ECDH(k.spk.PublicKey())
		dh4, _ := ek.ECDH(k.opk.PublicKey())
		ss, _ := k.ek1024.Encapsulate()
		km := append(append(append(append(append(make([]byte, 32, 192), dh1...), dh2...), dh3...), dh4...), ss...)
		hkdf.Key(sha256.New, km, nil, pqxdh.Info, 32)
	}
}

func BenchmarkRawRespondPrimitives(b *testing.B) {
	k := newRawKeys(b)
	for b.Loop() {
		dh1, _ := k.spk.ECDH(k.ikA.PublicKey())
		dh2, _ := k.ikB.ECDH(k.ek.PublicKey())
		dh3, _ := k.spk.ECDH(k.ek.PublicKey())
		dh4, _ := k.opk.ECDH(k.ek.PublicKey())
		ss, _ := k.dk.Decapsulate(k.ct)
		km := append(append(append(append(append(make([]byte, 32, 192), dh1...), dh2...), dh3...), dh4...), ss...)
		hkdf.Key(sha256.New, km, nil, pqxdh.Info, 32)
	}
}
