package natsbus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

func TestWakeSubjectIsOneValidSubjectPerDevice(t *testing.T) {
	refs := []store.DeviceRef{
		{Username: "alice", ID: 1},
		{Username: "alice", ID: 2},
		{Username: "alice.1", ID: 1},
		{Username: "a.b", ID: 1},
		{Username: "a*b >c", ID: 1},
		{Username: "é", ID: 4294967295},
		{Username: "", ID: 0},
		{Username: "_", ID: 0},
	}
	seen := map[string]store.DeviceRef{}
	for _, ref := range refs {
		s := wakeSubject("hush.wake.", ref)
		if err := checkSubject(s); err != nil {
			t.Errorf("%+v: %v", ref, err)
		}
		if other, ok := seen[s]; ok {
			t.Errorf("%+v and %+v share subject %q", ref, other, s)
		}
		seen[s] = ref
	}
	if got, want := wakeSubject("hush.wake.", store.DeviceRef{Username: "bob", ID: 7}), "hush.wake.626f62.7"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
}

func TestCheckSubjectRejectsWildcardsAndEmptyTokens(t *testing.T) {
	for _, s := range []string{"", ".", "a.", ".a", "a..b", "*", "a.>", "a b", "a\tb", "a*", "é", strings.Repeat("a", maxSubjectLen+1)} {
		if err := checkSubject(s); err == nil {
			t.Errorf("checkSubject(%q) = nil, want an error", s)
		}
	}
	for _, s := range []string{"hush", "hush-eu.prod_1", "devices.616c696365", strings.Repeat("a", maxSubjectLen)} {
		if err := checkSubject(s); err != nil {
			t.Errorf("checkSubject(%q) = %v", s, err)
		}
	}
}

func TestNewRejectsBadConfigWithoutLeakingCredentials(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "no NATS URL"},
		{"bad URL", Config{URL: "nats://hush:s3cret@[::1"}, "does not parse"},
		{"bad second URL", Config{URL: "nats://127.0.0.1:1, nats://hush:s3cret@[::1"}, "URL 2 of 2"},
		{"wildcard prefix", Config{URL: "nats://127.0.0.1:1", Prefix: "hush.*"}, "bad prefix"},
		{"empty token in prefix", Config{URL: "nats://127.0.0.1:1", Prefix: "hush."}, "bad prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			b, err := NewConfig(ctx, tc.cfg, nil)
			if err == nil {
				b.Close()
				t.Fatal("NewConfig succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestNewGivesUpWhenContextEndsWithoutLeakingCredentials(t *testing.T) {
	s := startNATS(t)
	s.kill() // a port where nothing listens
	logger, logs := newTestLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	b, err := New(ctx, "nats://hush:s3cret@"+s.addr(), logger)
	if err == nil {
		b.Close()
		t.Fatal("New succeeded with no server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %q is not context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %v after its context ended", d)
	}
	if !strings.Contains(err.Error(), s.addr()) {
		t.Errorf("error %q does not name the server", err)
	}
	for what, text := range map[string]string{"error": err.Error(), "logs": logs.String()} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("%s contain the password: %s", what, text)
		}
	}
}

func TestBackoffGrowsToItsCapWithJitter(t *testing.T) {
	f := backoff(time.Second)
	for attempts, hi := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 100: time.Second, 0: time.Second, -1: time.Second} {
		for range 100 {
			if d := f(attempts); d < hi/2 || d > hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempts, d, hi/2, hi)
			}
		}
	}
}

// FuzzWakeSubject checks that any username and device id make one valid,
// literal subject (no wildcard, no extra tokens), distinct per device.
func FuzzWakeSubject(f *testing.F) {
	f.Add("alice", uint32(1), "bob", uint32(1))
	f.Add("a.b", uint32(1), "a", uint32(1))
	f.Add("", uint32(0), "_", uint32(0))
	f.Fuzz(func(t *testing.T, u1 string, id1 uint32, u2 string, id2 uint32) {
		a, b := store.DeviceRef{Username: u1, ID: id1}, store.DeviceRef{Username: u2, ID: id2}
		sa, sb := wakeSubject("p.wake.", a), wakeSubject("p.wake.", b)
		if err := checkSubject(sa); err != nil && len(sa) <= maxSubjectLen {
			t.Fatalf("%+v: %v", a, err)
		}
		if n := strings.Count(sa, "."); n != 3 {
			t.Fatalf("%+v: subject %q has %d dots, want 3", a, sa, n)
		}
		if (sa == sb) != (a == b) {
			t.Fatalf("%+v -> %q, %+v -> %q", a, sa, b, sb)
		}
	})
}
