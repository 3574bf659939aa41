package pqxdh_test

import (
	"errors"
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
)

func devices(t *testing.T) (*ratchettest.Device, *ratchettest.Device) {
	a, err := ratchettest.NewDevice("alice", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ratchettest.NewDevice("bob", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestBothSidesDeriveTheSameSecret(t *testing.T) {
	alice, bob := devices(t)
	for _, useOneTime := range []bool{true, false} {
		var otk, kem uint32
		if useOneTime {
			otk, kem = bob.AnyOneTime()
		}
		b, err := bob.Bundle(otk, kem)
		if err != nil {
			t.Fatal(err)
		}
		ra, init, err := pqxdh.Initiate("alice", alice.Identity, b)
		if err != nil {
			t.Fatal(err)
		}
		if init.HasOneTime != useOneTime {
			t.Fatalf("one-time prekey used: %v", init.HasOneTime)
		}
		rb, err := bob.Responder().Respond("alice", init)
		if err != nil {
			t.Fatal(err)
		}
		if ra.SK != rb.SK || string(ra.AD) != string(rb.AD) {
			t.Fatal("initiator and responder disagree")
		}
		if !rb.RemoteIdentity.Equal(alice.Identity.Public()) || !ra.RemoteIdentity.Equal(bob.Identity.Public()) {
			t.Fatal("remote identities wrong")
		}
		// The AD binds the usernames: a responder told another sender
		// name derives a different AD.
		rc, err := bob.Responder().Respond("mallory", init)
		if err != nil {
			t.Fatal(err)
		}
		if string(rc.AD) == string(ra.AD) {
			t.Fatal("AD does not bind the initiator's username")
		}
	}
}

// lowOrderBundle signs a low-order point as a prekey, as a malicious
// device (or server with a stolen signing key) could.
func lowOrderBundle(t *testing.T, bob *ratchettest.Device, otk bool) *identity.Bundle {
	b, err := bob.Bundle(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 33)
	if otk {
		zero[0] = byte(keys.TagOneTimePrekey)
		k, err := keys.ParseOneTimePrekeyPublic(zero)
		if err != nil {
			t.Fatal(err)
		}
		b.OneTimePrekey = &identity.OneTimePrekey{ID: 99, Key: k}
		return b
	}
	zero[0] = byte(keys.TagSignedPrekey)
	k, err := keys.ParseSignedPrekeyPublic(zero)
	if err != nil {
		t.Fatal(err)
	}
	b.SignedPrekey.Key = k
	b.SignedPrekey.Signature = identity.SignPrekey(bob.Signing, b.IdentityKey, b.SignedPrekey.ID, k.Bytes())
	return b
}

func TestLowOrderPrekeysRejected(t *testing.T) {
	alice, bob := devices(t)
	for _, otk := range []bool{false, true} {
		_, _, err := pqxdh.Initiate("alice", alice.Identity, lowOrderBundle(t, bob, otk))
		if !errors.Is(err, pqxdh.ErrLowOrder) {
			t.Fatalf("low-order prekey (one-time %v): %v, want ErrLowOrder", otk, err)
		}
	}
	// A responder given a low-order base key refuses too.
	b, _ := bob.Bundle(0, 0)
	_, init, err := pqxdh.Initiate("alice", alice.Identity, b)
	if err != nil {
		t.Fatal(err)
	}
	init.BaseKey = keys.RawX25519{}
	if _, err := bob.Responder().Respond("alice", init); !errors.Is(err, pqxdh.ErrLowOrder) {
		t.Fatalf("low-order base key: %v", err)
	}
}

func TestUnsignedOrMisTypedPrekeysRejected(t *testing.T) {
	alice, bob := devices(t)
	b, _ := bob.Bundle(0, 0)
	b.KEMPrekey.Signature = append([]byte(nil), b.SignedPrekey.Signature...)
	if _, _, err := pqxdh.Initiate("alice", alice.Identity, b); !errors.Is(err, pqxdh.ErrBadBundle) {
		t.Fatalf("KEM key with the signed prekey's signature: %v", err)
	}
	// A one-time KEM key relabelled as last-resort breaks its signature
	// (the tag is signed), so a server cannot make one reusable.
	_, kem := bob.AnyOneTime()
	b, _ = bob.Bundle(0, kem)
	enc := b.KEMPrekey.Key.Bytes()
	enc[0] = byte(keys.TagKEMLastResort)
	relabelled, err := keys.ParseKEMPublic(enc)
	if err != nil {
		t.Fatal(err)
	}
	b.KEMPrekey.Key = relabelled
	if _, _, err := pqxdh.Initiate("alice", alice.Identity, b); !errors.Is(err, pqxdh.ErrBadBundle) {
		t.Fatalf("relabelled KEM key: %v", err)
	}
}

func TestResponderRefusesUnknownPrekeys(t *testing.T) {
	alice, bob := devices(t)
	otk, kem := bob.AnyOneTime()
	b, _ := bob.Bundle(otk, kem)
	_, init, err := pqxdh.Initiate("alice", alice.Identity, b)
	if err != nil {
		t.Fatal(err)
	}
	delete(bob.OneTime, otk)
	if _, err := bob.Responder().Respond("alice", init); !errors.Is(err, pqxdh.ErrUnknownPrekey) {
		t.Fatalf("used one-time prekey: %v", err)
	}
}
