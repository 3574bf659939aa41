package keys

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestTypedKeysRoundTripAndStrictParse(t *testing.T) {
	a, err := GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	enc := a.Public().Bytes()
	if len(enc) != SigningPublicSize || Tag(enc[0]) != TagAccount {
		t.Fatalf("account key encoding %x", enc)
	}
	p, err := ParseAccountPublic(enc)
	if err != nil || !p.Equal(a.Public()) {
		t.Fatalf("round trip: %v", err)
	}
	// Same bytes, wrong kind: a device signing key parser refuses the tag.
	if _, err := ParseDeviceSigningPublic(enc); !errors.Is(err, ErrMalformed) {
		t.Fatalf("account key parsed as device key: %v", err)
	}
	for _, bad := range [][]byte{nil, enc[:10], append(enc, 0)} {
		if _, err := ParseAccountPublic(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseAccountPublic(%x): %v", bad, err)
		}
	}
	k, err := GenerateKEM(false)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ParseKEMPublic(k.Public().Bytes())
	if err != nil || kp.LastResort() || !kp.Equal(k.Public()) {
		t.Fatalf("KEM round trip: %v", err)
	}
	ss, ct, err := kp.Encapsulate()
	if err != nil {
		t.Fatal(err)
	}
	ss2, err := k.Decapsulate(ct)
	if err != nil || string(ss) != string(ss2) {
		t.Fatal("KEM shared secrets differ")
	}
}

func TestPrivateKeysNeverPrint(t *testing.T) {
	a, _ := GenerateAccount()
	i, _ := GenerateIdentity()
	k, _ := GenerateKEM(true)
	secrets := map[string][]byte{"account": a.Seed(), "identity": i.Bytes()[1:], "kem": k.Bytes()[1:]}
	out := fmt.Sprintf("%v %+v %#v %s %x %q | %v %+v %#v %s %x | %v %#v %x", a, a, a, a, a, a, i, i, i, i, i, k, k, k)
	for name, s := range secrets {
		for _, form := range []string{fmt.Sprintf("%x", s), fmt.Sprintf("%X", s), string(s)} {
			if strings.Contains(out, form) {
				t.Fatalf("%s private key appears in formatted output", name)
			}
		}
	}
	if !strings.Contains(out, "redacted") {
		t.Fatalf("unexpected output %q", out)
	}
}

// TestNestedPrivateKeyDoesNotPrint: fmt prints unexported fields without
// calling String, so the key must not be stored by value.
func TestNestedPrivateKeyDoesNotPrint(t *testing.T) {
	a, _ := GenerateAccount()
	holder := struct{ key AccountPrivate }{a}
	out := fmt.Sprintf("%v %+v %#v", holder, holder, holder)
	if strings.Contains(out, fmt.Sprintf("%v", a.Seed())) || strings.Contains(out, fmt.Sprintf("%x", a.Seed())) {
		t.Fatalf("seed printed in %q", out)
	}
}

func TestEqualIsByValue(t *testing.T) {
	a, _ := GenerateIdentity()
	b, _ := GenerateIdentity()
	if !a.Public().Equal(a.Public()) || a.Public().Equal(b.Public()) {
		t.Fatal("Equal is wrong")
	}
}

func TestLowOrderPeerRejected(t *testing.T) {
	a, _ := GenerateIdentity()
	var zero RawX25519
	if _, err := a.ECDH(zero); err == nil {
		t.Fatal("ECDH with the all-zero point succeeded")
	}
}
