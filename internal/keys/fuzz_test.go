package keys

import (
	"bytes"
	"errors"
	"testing"
)

type encoded interface{ Bytes() []byte }

// reencodes returns a check for one parser's result on input b: an error
// must wrap ErrMalformed, and an accepted key must re-encode to b exactly.
func reencodes(t *testing.T, b []byte) func(encoded, error) {
	return func(p encoded, err error) {
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(p.Bytes(), b) {
			t.Fatalf("accepted %x but re-encodes as %x", b, p.Bytes())
		}
	}
}

// FuzzParsePublic feeds every public-key parser the same input: each must
// either reject it with ErrMalformed or accept it and re-encode it exactly.
func FuzzParsePublic(f *testing.F) {
	a, _ := GenerateAccount()
	i, _ := GenerateIdentity()
	k, _ := GenerateKEM(true)
	f.Add(a.Public().Bytes())
	f.Add(i.Public().Bytes())
	f.Add(k.Public().Bytes())
	f.Add([]byte{byte(TagKEMOneTime)})
	f.Fuzz(func(t *testing.T, b []byte) {
		check := reencodes(t, b)
		check(ParseAccountPublic(b))
		check(ParseDeviceSigningPublic(b))
		check(ParseServerPublic(b))
		check(ParseIdentityPublic(b))
		check(ParseSignedPrekeyPublic(b))
		check(ParseOneTimePrekeyPublic(b))
		check(ParseKEMPublic(b))
	})
}

// FuzzParsePrivate does the same for the private encodings kept on disk.
func FuzzParsePrivate(f *testing.F) {
	a, _ := GenerateAccount()
	i, _ := GenerateIdentity()
	k, _ := GenerateKEM(false)
	f.Add(a.Bytes())
	f.Add(i.Bytes())
	f.Add(k.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		check := reencodes(t, b)
		check(ParseAccountPrivate(b))
		check(ParseDeviceSigningPrivate(b))
		check(ParseIdentityPrivate(b))
		check(ParseEphemeralPrivate(b))
		check(ParseKEMPrivate(b))
	})
}
