package pow

import (
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary challenges to the parser and verifier: they
// must return an error, never panic, and never accept a challenge the
// issuer did not make.
func FuzzVerify(f *testing.F) {
	is := NewIssuer([]byte("fuzz secret"), 0, func() time.Time { return time.Unix(1_800_000_000, 0) })
	seed := is.New()
	f.Add(seed, "alice", uint64(0))
	f.Add(make([]byte, ChallengeSize), "alice", uint64(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "", uint64(0))
	f.Fuzz(func(t *testing.T, ch []byte, user string, nonce uint64) {
		c, err := Parse(ch)
		if err == nil && len(ch) != ChallengeSize {
			t.Fatalf("Parse accepted %d bytes", len(ch))
		}
		if err == nil && c.Expiry.Unix() < 0 {
			t.Fatalf("negative expiry %v", c.Expiry)
		}
		// The fuzzer cannot forge a MAC: only the issued seed may pass.
		if err := is.Verify(ch, user, nonce); err == nil && string(ch) != string(seed) {
			t.Fatalf("Verify accepted a challenge the issuer did not make: %x", ch)
		}
	})
}
