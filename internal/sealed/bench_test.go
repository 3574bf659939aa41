package sealed_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
	"github.com/hush-chat/hush/internal/sealed"
)

// Seal is one HPKE seal; Open is one HPKE open plus one Ed25519
// verification of the certificate. The Raw twins call exactly those.

func benchSetup(b *testing.B) (keys.ServerPrivate, *ratchettest.Device, *sealed.Certificate, []byte) {
	srv, _ := keys.GenerateServer()
	d, err := ratchettest.NewDevice("bob", 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	c, err := sealed.IssueCertificate(srv, "alice", 1, d.Identity.Public(), d.Signing.Public(), time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return srv, d, c, make([]byte, 1024)
}

func BenchmarkSeal(b *testing.B) {
	_, d, c, msg := benchSetup(b)
	for b.Loop() {
		if _, err := sealed.Seal(d.Identity.Public(), c, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	srv, d, c, msg := benchSetup(b)
	env, _ := sealed.Seal(d.Identity.Public(), c, msg)
	now := time.Now()
	for b.Loop() {
		if _, err := sealed.Open(d.Identity, env, srv.Public(), now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawSealPrimitives(b *testing.B) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pk, _ := hpke.NewDHKEMPublicKey(priv.PublicKey())
	pt := make([]byte, 1024+180)
	for b.Loop() {
		if _, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawOpenPrimitives(b *testing.B) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pk, _ := hpke.NewDHKEMPublicKey(priv.PublicKey())
	sk, _ := hpke.NewDHKEMPrivateKey(priv)
	ct, _ := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), make([]byte, 1024+180))
	spub, spriv, _ := ed25519.GenerateKey(rand.Reader)
	body := make([]byte, 120)
	sig := ed25519.Sign(spriv, body)
	for b.Loop() {
		if _, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"), ct); err != nil {
			b.Fatal(err)
		}
		ed25519.Verify(spub, body, sig)
	}
}
