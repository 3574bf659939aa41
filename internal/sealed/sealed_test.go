package sealed_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
	"github.com/hush-chat/hush/internal/sealed"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type fixture struct {
	server     keys.ServerPrivate
	alice, bob *ratchettest.Device
	aRec, bRec *ratchet.Record
	aliceCert  *sealed.Certificate
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{aRec: &ratchet.Record{}, bRec: &ratchet.Record{}}
	var err error
	if f.server, err = keys.GenerateServer(); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = ratchettest.NewDevice("alice", 1, 2); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = ratchettest.NewDevice("bob", 1, 2); err != nil {
		t.Fatal(err)
	}
	otk, kem := f.bob.AnyOneTime()
	bundle, err := f.bob.Bundle(otk, kem)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.aRec.Initiate("alice", f.alice.Identity, bundle); err != nil {
		t.Fatal(err)
	}
	f.aliceCert = f.cert(t, f.alice, now.Add(24*time.Hour))
	return f
}

func (f *fixture) cert(t *testing.T, d *ratchettest.Device, exp time.Time) *sealed.Certificate {
	t.Helper()
	c, err := sealed.IssueCertificate(f.server, d.Username, d.ID, d.Identity.Public(), d.Signing.Public(), exp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) aliceList(t *testing.T) *identity.DeviceList {
	t.Helper()
	l, err := f.alice.DeviceList(1)
	if err != nil {
		t.Fatal(err)
	}
	return &l.List
}

func (f *fixture) sealFromAlice(t *testing.T, pt []byte, cert *sealed.Certificate) []byte {
	t.Helper()
	m, err := f.aRec.Encrypt(pt)
	if err != nil {
		t.Fatal(err)
	}
	env, err := sealed.Seal(f.bob.Identity.Public(), cert, m)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestSealedRoundTrip(t *testing.T) {
	f := newFixture(t)
	env := f.sealFromAlice(t, []byte("sealed hello"), f.aliceCert)
	if bytes.Contains(env, []byte("alice")) {
		t.Fatal("envelope shows the sender's username")
	}
	o, err := sealed.Open(f.bob.Identity, env, f.server.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if o.Certificate.Username != "alice" || o.Certificate.DeviceID != 1 {
		t.Fatalf("certificate names %s/%d", o.Certificate.Username, o.Certificate.DeviceID)
	}
	d, err := o.Decrypt(f.bRec, f.bob.Responder(), f.aliceList(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Plaintext) != "sealed hello" {
		t.Fatalf("got %q", d.Plaintext)
	}
}

func TestWrongRecipientCannotOpen(t *testing.T) {
	f := newFixture(t)
	env := f.sealFromAlice(t, []byte("for bob only"), f.aliceCert)
	carol, err := ratchettest.NewDevice("carol", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.Open(carol.Identity, env, f.server.Public(), now); !errors.Is(err, sealed.ErrNotForUs) {
		t.Fatalf("carol opening bob's envelope: %v", err)
	}
}

func TestExpiredOrForgedCertificateRejected(t *testing.T) {
	f := newFixture(t)
	other, err := keys.GenerateServer()
	if err != nil {
		t.Fatal(err)
	}
	expired := f.cert(t, f.alice, now.Add(-time.Second))
	forged, err := sealed.IssueCertificate(other, "alice", 1, f.alice.Identity.Public(), f.alice.Signing.Public(), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tooLong := f.cert(t, f.alice, now.Add(sealed.MaxCertificateLifetime+time.Hour))
	tampered := *f.aliceCert
	tampered.DeviceID = 2
	for name, tc := range map[string]struct {
		cert *sealed.Certificate
		want error
	}{
		"expired":  {expired, sealed.ErrExpiredCertificate},
		"forged":   {forged, sealed.ErrBadCertificate},
		"too long": {tooLong, sealed.ErrBadCertificate},
		"tampered": {&tampered, sealed.ErrBadCertificate},
	} {
		env := f.sealFromAlice(t, []byte("x"), tc.cert)
		if _, err := sealed.Open(f.bob.Identity, env, f.server.Public(), now); !errors.Is(err, tc.want) {
			t.Errorf("%s certificate: %v, want %v", name, err, tc.want)
		}
	}
	// Exactly at expiry is expired.
	if err := f.aliceCert.Verify(f.server.Public(), f.aliceCert.Expires); !errors.Is(err, sealed.ErrExpiredCertificate) {
		t.Fatalf("at expiry: %v", err)
	}
}

// TestCertificateMustMatchSessionPeer: mallory holds a valid certificate
// of her own and wraps alice's ratchet message with it; bob must refuse.
func TestCertificateMustMatchSessionPeer(t *testing.T) {
	f := newFixture(t)
	mallory, err := ratchettest.NewDevice("mallory", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// First establish the session with a genuine message.
	o, err := sealed.Open(f.bob.Identity, f.sealFromAlice(t, []byte("hi"), f.aliceCert), f.server.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Decrypt(f.bRec, f.bob.Responder(), f.aliceList(t)); err != nil {
		t.Fatal(err)
	}
	before := f.bRec.Marshal()
	mcert := f.cert(t, mallory, now.Add(time.Hour))
	// Mallory's certificate claiming alice's username but her own keys.
	spoof, err := sealed.IssueCertificate(f.server, "alice", 1, mallory.Identity.Public(), mallory.Signing.Public(), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*sealed.Certificate{mcert, spoof} {
		env := f.sealFromAlice(t, []byte("second"), c)
		o, err := sealed.Open(f.bob.Identity, env, f.server.Public(), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Decrypt(f.bRec, f.bob.Responder(), f.aliceList(t)); !errors.Is(err, sealed.ErrSenderMismatch) {
			t.Fatalf("certificate of %s on alice's message: %v", c.Username, err)
		}
		if !bytes.Equal(before, f.bRec.Marshal()) {
			t.Fatal("rejected message changed the session")
		}
	}
}

// TestServerForgedCertificateRejected: the server certifies its own keys
// under alice's name and runs PQXDH with them; bob, checking the
// certificate against alice's signed device list, refuses, and his
// session with alice is untouched.
func TestServerForgedCertificateRejected(t *testing.T) {
	f := newFixture(t)
	o, err := sealed.Open(f.bob.Identity, f.sealFromAlice(t, []byte("genuine"), f.aliceCert), f.server.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Decrypt(f.bRec, f.bob.Responder(), f.aliceList(t)); err != nil {
		t.Fatal(err)
	}
	before := f.bRec.Marshal()
	fake, err := ratchettest.NewDevice("alice", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	otk, kem := f.bob.AnyOneTime()
	bundle, err := f.bob.Bundle(otk, kem)
	if err != nil {
		t.Fatal(err)
	}
	var rec ratchet.Record
	if err := rec.Initiate("alice", fake.Identity, bundle); err != nil {
		t.Fatal(err)
	}
	m, err := rec.Encrypt([]byte("forged"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := sealed.Seal(f.bob.Identity.Public(), f.cert(t, fake, now.Add(time.Hour)), m)
	if err != nil {
		t.Fatal(err)
	}
	o, err = sealed.Open(f.bob.Identity, env, f.server.Public(), now)
	if err != nil {
		t.Fatal(err) // the server's signature is genuine
	}
	if _, err := o.Decrypt(f.bRec, f.bob.Responder(), f.aliceList(t)); !errors.Is(err, sealed.ErrSenderMismatch) {
		t.Fatalf("forged certificate: %v, want ErrSenderMismatch", err)
	}
	if !bytes.Equal(before, f.bRec.Marshal()) {
		t.Fatal("forged message changed bob's session with alice")
	}
}

func TestFlippedEnvelopeRejected(t *testing.T) {
	f := newFixture(t)
	env := f.sealFromAlice(t, []byte("x"), f.aliceCert)
	for i := 0; i < len(env)*8; i += 13 {
		bad := bytes.Clone(env)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := sealed.Open(f.bob.Identity, bad, f.server.Public(), now); err == nil {
			t.Fatalf("envelope with bit %d flipped opened", i)
		}
	}
}

func TestCertificateRoundTrip(t *testing.T) {
	f := newFixture(t)
	b, err := f.aliceCert.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err := sealed.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := c.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("certificate does not round-trip")
	}
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(bytes.Clone(b), 0)} {
		if _, err := sealed.ParseCertificate(bad); !errors.Is(err, sealed.ErrMalformed) {
			t.Fatalf("ParseCertificate(%d bytes): %v", len(bad), err)
		}
	}
}
