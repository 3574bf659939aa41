package ratchet_test

import (
	"bytes"
	"testing"

	"github.com/hush-chat/hush/internal/ratchet"
)

// FuzzParseMessage: hostile messages parse or fail, and a parsed message
// fed to a real session never panics nor changes state unless it decrypts.
func FuzzParseMessage(f *testing.F) {
	alice, bob := newPair(f)
	first := alice.encrypt(f, msg("first"))
	bob.mustDecrypt(f, first, msg("first"))
	f.Add(first)
	f.Add(bob.encrypt(f, msg("reply")))
	f.Add(alice.encrypt(f, msg("second")))
	before := bob.rec.Marshal()
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ratchet.ParseMessage(data); err != nil {
			return
		}
		rec, err := ratchet.UnmarshalRecord(before)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rec.DecryptFrom(bob.dev.Responder(), "alice", bob.peerID, data); err != nil && !bytes.Equal(rec.Marshal(), before) {
			t.Fatalf("failed decrypt changed state: %v", err)
		}
	})
}

// FuzzUnmarshalRecord: stored state loads strictly and canonically.
func FuzzUnmarshalRecord(f *testing.F) {
	alice, bob := newPair(f)
	bob.mustDecrypt(f, alice.encrypt(f, msg("x")), msg("x"))
	_ = alice.encrypt(f, msg("skipped"))
	bob.mustDecrypt(f, alice.encrypt(f, msg("y")), msg("y"))
	f.Add(bob.rec.Marshal())
	f.Add(alice.rec.Marshal())
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ratchet.UnmarshalRecord(data)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), data) {
			t.Fatal("accepted state does not re-encode identically")
		}
		_, _ = r.Encrypt([]byte("x"))
	})
}
