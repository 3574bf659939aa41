package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

func TestPowOKCountsLeadingZeroBits(t *testing.T) {
	var sum [32]byte
	sum[0], sum[1] = 0x00, 0x1f // 11 leading zero bits
	for n, want := range map[uint32]bool{0: true, 8: true, 11: true, 12: false, 32: false} {
		if got := powOK(sum, n); got != want {
			t.Errorf("powOK(11 zero bits, %d) = %v", n, got)
		}
	}
	if !powOK([32]byte{}, 256) {
		t.Error("all-zero hash fails 256 bits")
	}
}

func TestSolvePowFindsAValidNonce(t *testing.T) {
	challenge := []byte("challenge bytes")
	nonce, err := solvePow(context.Background(), challenge, "alice", 12)
	if err != nil {
		t.Fatal(err)
	}
	msg := append(append(append([]byte(nil), challenge...), "alice"...), binary.BigEndian.AppendUint64(nil, nonce)...)
	if !powOK(sha256.Sum256(msg), 12) {
		t.Fatalf("nonce %d does not meet 12 bits", nonce)
	}
	if _, err := solvePow(context.Background(), challenge, "alice", maxPowBits+1); err == nil {
		t.Fatal("accepted an absurd difficulty")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := solvePow(ctx, challenge, "alice", 30); err == nil {
		t.Fatal("ignored a cancelled context")
	}
}

func TestRegisterSolvesTheServersProofOfWork(t *testing.T) {
	srv := startServerPow(t, 16) // the server's default difficulty
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "registered with work")
	if got, _ := collect(t, bob, 0); len(got) != 1 {
		t.Fatalf("bob got %q", texts(got))
	}
}
