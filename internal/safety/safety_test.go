package safety

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hush-chat/hush/internal/keys"
)

// TestSignalFingerprintVector checks our construction against Signal's
// published vector, feeding it Signal's key encoding and identifiers.
func TestSignalFingerprintVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/signal_fingerprint.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Iterations             int
		AliceID                string `json:"alice_id"`
		AliceKey               string `json:"alice_key"`
		BobID                  string `json:"bob_id"`
		BobKey                 string `json:"bob_key"`
		Displayable            string
		AliceScannableV1Local  string `json:"alice_scannable_v1_local"`
		AliceScannableV1Remote string `json:"alice_scannable_v1_remote"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	ak, _ := hex.DecodeString(v.AliceKey)
	bk, _ := hex.DecodeString(v.BobKey)
	a := iteratedHash([]byte(v.AliceID), ak, v.Iterations)
	b := iteratedHash([]byte(v.BobID), bk, v.Iterations)
	if got := combine(a, b); got != v.Displayable {
		t.Fatalf("alice's view %s, want %s", got, v.Displayable)
	}
	if got := combine(b, a); got != v.Displayable {
		t.Fatalf("bob's view %s, want %s", got, v.Displayable)
	}
	if got := hex.EncodeToString(a[:32]); got != v.AliceScannableV1Local {
		t.Fatalf("scannable local %s, want %s", got, v.AliceScannableV1Local)
	}
	if got := hex.EncodeToString(b[:32]); got != v.AliceScannableV1Remote {
		t.Fatalf("scannable remote %s, want %s", got, v.AliceScannableV1Remote)
	}
}

func account(t *testing.T) keys.AccountPublic {
	t.Helper()
	k, err := keys.GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func TestSafetyNumbersMatchAndChangeWithEitherKey(t *testing.T) {
	alice, bob := account(t), account(t)
	an := New("alice", alice, "bob", bob)
	bn := New("bob", bob, "alice", alice)
	if an.Digits() != bn.Digits() || len(an.Digits()) != Digits {
		t.Fatalf("alice sees %s, bob sees %s", an, bn)
	}
	if strings.Count(an.String(), " ") != 11 {
		t.Fatalf("grouping: %q", an.String())
	}
	if err := an.CompareScanned(bn.Scannable()); err != nil {
		t.Fatalf("alice scanning bob: %v", err)
	}
	if err := bn.CompareScanned(an.Scannable()); err != nil {
		t.Fatalf("bob scanning alice: %v", err)
	}
	if err := an.CompareDigits(bn.String()); err != nil {
		t.Fatalf("typed number: %v", err)
	}
	// A new key on either side changes the number and fails both checks.
	for _, n := range []*Number{
		New("alice", account(t), "bob", bob),
		New("alice", alice, "bob", account(t)),
		New("alice", alice, "bobby", bob),
	} {
		if n.Digits() == an.Digits() {
			t.Fatal("safety number did not change")
		}
		if err := an.CompareScanned(n.Scannable()); !errors.Is(err, ErrMismatch) {
			t.Fatalf("scanned changed number: %v", err)
		}
		if err := an.CompareDigits(n.Digits()); !errors.Is(err, ErrMismatch) {
			t.Fatalf("typed changed number: %v", err)
		}
	}
	// Scanning one's own code is not a match.
	if err := an.CompareScanned(an.Scannable()); !errors.Is(err, ErrMismatch) {
		t.Fatalf("own code: %v", err)
	}
	for _, bad := range []string{"", "HUSH-SN1:", "HUSH-SN1:zz", "SN1:" + an.Scannable(), an.Scannable() + "00"} {
		if err := an.CompareScanned(bad); err == nil {
			t.Fatalf("payload %q accepted", bad)
		}
	}
}

func FuzzCompareScanned(f *testing.F) {
	alice, bob := keys.AccountPublic{}, keys.AccountPublic{}
	n := New("alice", alice, "bob", bob)
	f.Add(n.Scannable())
	f.Add("HUSH-SN1:00")
	f.Fuzz(func(t *testing.T, s string) {
		_ = n.CompareScanned(s)
		_ = n.CompareDigits(s)
	})
}
