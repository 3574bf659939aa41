package identity

import (
	"bytes"
	"testing"

	"github.com/hush-chat/hush/internal/keys"
)

func testList(t testing.TB) (*SignedDeviceList, keys.AccountPrivate) {
	acct, _ := keys.GenerateAccount()
	sk, _ := keys.GenerateDeviceSigning()
	ik, _ := keys.GenerateIdentity()
	l, err := SignDeviceList(DeviceList{Username: "alice", Version: 3, Devices: []Device{{ID: 1, SigningKey: sk.Public(), IdentityKey: ik.Public()}}}, acct)
	if err != nil {
		t.Fatal(err)
	}
	return l, acct
}

// FuzzParseSignedDeviceList: accepted input must re-encode identically.
func FuzzParseSignedDeviceList(f *testing.F) {
	l, _ := testList(f)
	b, _ := l.Marshal()
	f.Add(b)
	f.Add(b[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignedDeviceList(data)
		if err != nil {
			return
		}
		out, err := s.Marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("accepted list does not re-encode: %v", err)
		}
		_ = s.Verify(keys.AccountPublic{})
	})
}

func FuzzParseBundle(f *testing.F) {
	ik, _ := keys.GenerateIdentity()
	sk, _ := keys.GenerateDeviceSigning()
	spk, _ := keys.GenerateSignedPrekey()
	kem, _ := keys.GenerateKEM(true)
	otk, _ := keys.GenerateOneTimePrekey()
	b := &Bundle{Username: "bob", DeviceID: 1, IdentityKey: ik.Public(), SigningKey: sk.Public(),
		SignedPrekey:  SignedPrekey{ID: 1, Key: spk.Public(), Signature: SignPrekey(sk, ik.Public(), 1, spk.Public().Bytes())},
		OneTimePrekey: &OneTimePrekey{ID: 2, Key: otk.Public()},
		KEMPrekey:     KEMPrekey{ID: 3, Key: kem.Public(), Signature: SignPrekey(sk, ik.Public(), 3, kem.Public().Bytes())}}
	enc, err := b.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(enc[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseBundle(data)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("accepted bundle does not re-encode: %v", err)
		}
		_ = p.Verify()
	})
}
