package identity

import (
	"errors"
	"testing"

	"github.com/hush-chat/hush/internal/keys"
)

func TestUsernameRules(t *testing.T) {
	for in, want := range map[string]string{"Alice": "alice", "bob_1.x": "bob_1.x", "abc": "abc"} {
		got, err := NormalizeUsername(in)
		if err != nil || got != want {
			t.Errorf("NormalizeUsername(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "ab", "a-b-c", "名前名前", "with space", "0123456789012345678901234567890123", "\u212Aalice", "\u0130ris", "KK"} {
		if _, err := NormalizeUsername(bad); !errors.Is(err, ErrBadUsername) {
			t.Errorf("NormalizeUsername(%q) accepted", bad)
		}
	}
	if !IsReserved("admin") || IsReserved("alice") {
		t.Fatal("reserved list")
	}
}

func TestDeviceListSignatureAndRollback(t *testing.T) {
	l, acct := testList(t)
	if err := l.Verify(acct.Public()); err != nil {
		t.Fatal(err)
	}
	other, _ := keys.GenerateAccount()
	if err := l.Verify(other.Public()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong account key: %v", err)
	}
	enc, _ := l.Marshal()
	p, err := ParseSignedDeviceList(enc)
	if err != nil {
		t.Fatal(err)
	}
	p.List.Version = 4 // tampered: signature no longer holds
	if err := p.Verify(acct.Public()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered version: %v", err)
	}
	older := l.List
	older.Version = 2
	o, _ := SignDeviceList(older, acct)
	if err := CheckSuccessor(l, o); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback: %v", err)
	}
	newer := l.List
	newer.Version = 4
	n, _ := SignDeviceList(newer, acct)
	if err := CheckSuccessor(l, n); err != nil {
		t.Fatalf("newer list: %v", err)
	}
	sk, _ := keys.GenerateDeviceSigning()
	ik, _ := keys.GenerateIdentity()
	same := l.List
	same.Devices = append([]Device{}, l.List.Devices...)
	same.Devices = append(same.Devices, Device{ID: 2, SigningKey: sk.Public(), IdentityKey: ik.Public()})
	s, _ := SignDeviceList(same, acct)
	if err := CheckSuccessor(l, s); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("same version, other devices: %v", err)
	}
}
