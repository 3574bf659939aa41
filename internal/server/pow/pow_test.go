package pow

import (
	"context"
	"errors"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestIssuer(bits int) (*Issuer, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	return NewIssuer([]byte("test secret"), bits, c.now), c
}

func solve(t *testing.T, ch []byte, user string, bits int) uint64 {
	t.Helper()
	n, err := Solve(context.Background(), ch, user, bits)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSolvedChallengeVerifiesOnce(t *testing.T) {
	is, _ := newTestIssuer(12)
	ch := is.New()
	if len(ch) != ChallengeSize {
		t.Fatalf("challenge is %d bytes", len(ch))
	}
	n := solve(t, ch, "alice", 12)
	if err := is.Verify(ch, "alice", n); err != nil {
		t.Fatalf("valid solution refused: %v", err)
	}
	if err := is.Verify(ch, "alice", n); !errors.Is(err, errReused) {
		t.Fatalf("second use: got %v, want reuse error", err)
	}
}

func TestSolutionIsBoundToUsername(t *testing.T) {
	is, _ := newTestIssuer(16)
	ch := is.New()
	n := solve(t, ch, "alice", 16)
	// A solution for one name succeeds for another with probability 2^-16;
	// search for a name it does not solve, so the test is deterministic.
	other := "bob"
	for i := 0; Valid(ch, other, n, 16); i++ {
		other = "bob" + string(rune('a'+i%26))
	}
	if err := is.Verify(ch, other, n); !errors.Is(err, errWork) {
		t.Fatalf("solution for alice accepted for %s: %v", other, err)
	}
}

func TestExpiredChallengeRefused(t *testing.T) {
	is, c := newTestIssuer(0)
	ch := is.New()
	c.t = c.t.Add(Validity)
	if err := is.Verify(ch, "alice", 0); !errors.Is(err, errExpired) {
		t.Fatalf("got %v, want expired", err)
	}
}

func TestForeignChallengeRefused(t *testing.T) {
	is, _ := newTestIssuer(0)
	other := NewIssuer([]byte("other secret"), 0, is.now)
	if err := is.Verify(other.New(), "alice", 0); !errors.Is(err, errMAC) {
		t.Fatalf("got %v, want MAC error", err)
	}
	ch := is.New()
	ch[3] ^= 1 // move the expiry
	if err := is.Verify(ch, "alice", 0); !errors.Is(err, errMAC) {
		t.Fatalf("tampered expiry: got %v, want MAC error", err)
	}
	for _, n := range []int{0, 1, ChallengeSize - 1, ChallengeSize + 1} {
		if err := is.Verify(make([]byte, n), "alice", 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%d-byte challenge: got %v", n, err)
		}
	}
}

func TestZeroBitsAcceptsAnyNonce(t *testing.T) {
	is, _ := newTestIssuer(0)
	if err := is.Verify(is.New(), "alice", 12345); err != nil {
		t.Fatal(err)
	}
}

func TestForgetDropsOnlyExpired(t *testing.T) {
	is, c := newTestIssuer(0)
	ch := is.New()
	if err := is.Verify(ch, "a", 0); err != nil {
		t.Fatal(err)
	}
	is.Forget()
	if err := is.Verify(ch, "a", 0); !errors.Is(err, errReused) {
		t.Fatalf("forgot a live challenge: %v", err)
	}
	c.t = c.t.Add(Validity)
	is.Forget()
	if len(is.used) != 0 {
		t.Fatalf("%d expired challenges remembered", len(is.used))
	}
}

func TestLeadingZeroBits(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want int
	}{
		{[]byte{0x80}, 0}, {[]byte{0x01}, 7}, {[]byte{0, 0x40}, 9}, {[]byte{0, 0}, 16}, {nil, 0},
	} {
		if got := LeadingZeroBits(tc.b); got != tc.want {
			t.Errorf("LeadingZeroBits(%x) = %d, want %d", tc.b, got, tc.want)
		}
	}
}

func TestSolveStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Solve(ctx, make([]byte, ChallengeSize), "a", MaxBits); err == nil {
		t.Fatal("Solve ignored a cancelled context")
	}
}

func BenchmarkSolveDefault(b *testing.B) {
	is, _ := newTestIssuer(DefaultBits)
	for b.Loop() {
		if _, err := Solve(context.Background(), is.New(), "alice", DefaultBits); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSpendAcrossIssuers: a challenge one node accepted and another node
// (same secret) was told about cannot be used on the second; challenges
// from another secret or expired ones are not remembered.
func TestSpendAcrossIssuers(t *testing.T) {
	a, c := newTestIssuer(8)
	b := NewIssuer([]byte("test secret"), 8, c.now)
	ch := a.New()
	n := solve(t, ch, "alice", 8)
	if err := a.Verify(ch, "alice", n); err != nil {
		t.Fatal(err)
	}
	b.Spend(ch)
	if err := b.Verify(ch, "alice", n); !errors.Is(err, errReused) {
		t.Fatalf("spent challenge on the second issuer: got %v, want reuse error", err)
	}

	foreign := NewIssuer([]byte("other secret"), 8, c.now).New()
	b.Spend(foreign)
	b.Spend(ch[:10])
	old := a.New()
	c.t = c.t.Add(Validity + time.Second)
	b.Spend(old)
	b.mu.Lock()
	n2 := len(b.used)
	b.mu.Unlock()
	if n2 != 1 {
		t.Fatalf("issuer remembers %d challenges, want only the one spent", n2)
	}
}
