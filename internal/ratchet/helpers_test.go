package ratchet_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
)

// party is one side of a conversation: a device and its record for the peer.
type party struct {
	dev    *ratchettest.Device
	rec    *ratchet.Record
	peer   string
	peerID keys.IdentityPublic // the peer device's identity key, as a device list names it
}

// encrypt encrypts on the party's current session.
func (p *party) encrypt(t testing.TB, pt []byte) []byte {
	t.Helper()
	ct, err := p.rec.Encrypt(pt)
	if err != nil {
		t.Fatalf("%s encrypt: %v", p.dev.Username, err)
	}
	return ct
}

// decrypt decrypts and consumes used prekeys, as a client would.
func (p *party) decrypt(ct []byte) ([]byte, error) {
	d, err := p.rec.DecryptFrom(p.dev.Responder(), p.peer, p.peerID, ct)
	if err != nil {
		return nil, err
	}
	p.dev.Consume(d.Prekeys)
	return d.Plaintext, nil
}

func (p *party) mustDecrypt(t testing.TB, ct, want []byte) {
	t.Helper()
	pt, err := p.decrypt(ct)
	if err != nil {
		t.Fatalf("%s decrypt: %v", p.dev.Username, err)
	}
	if !bytes.Equal(pt, want) {
		t.Fatalf("%s decrypted %q, want %q", p.dev.Username, pt, want)
	}
}

// mustFailUnchanged checks that decrypting ct fails with want and leaves
// the record byte-identical.
func (p *party) mustFailUnchanged(t testing.TB, ct []byte, want error) {
	t.Helper()
	before := p.rec.Marshal()
	pt, err := p.decrypt(ct)
	if err == nil {
		t.Fatalf("%s decrypted a bad message to %q", p.dev.Username, pt)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", p.dev.Username, err, want)
	}
	if !bytes.Equal(before, p.rec.Marshal()) {
		t.Fatalf("%s: failed decrypt (%v) changed the session state", p.dev.Username, err)
	}
}

func newDevice(t testing.TB, user string) *ratchettest.Device {
	t.Helper()
	d, err := ratchettest.NewDevice(user, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newPair returns alice and bob, with alice's session to bob initiated
// using one-time prekeys of both kinds.
func newPair(t testing.TB) (alice, bob *party) {
	t.Helper()
	alice = &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
	bob = &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
	introduce(alice, bob)
	initiate(t, alice, bob)
	return alice, bob
}

// introduce tells each party the other's identity key.
func introduce(a, b *party) {
	a.peerID = b.dev.Identity.Public()
	b.peerID = a.dev.Identity.Public()
}

// initiate starts a session from a to b with fresh one-time prekeys.
func initiate(t testing.TB, a, b *party) {
	t.Helper()
	otk, kem := b.dev.AnyOneTime()
	bundle, err := b.dev.Bundle(otk, kem)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rec.Initiate(a.dev.Username, a.dev.Identity, bundle); err != nil {
		t.Fatalf("initiate: %v", err)
	}
}

func msg(format string, args ...any) []byte { return []byte(fmt.Sprintf(format, args...)) }
