package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBurstThenRefill(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(60, time.Minute, 3, c.now) // one per second, burst 3
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("event %d within burst refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("event past burst allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another key is limited by the first key's bucket")
	}
	c.t = c.t.Add(time.Second)
	if !l.Allow("a") {
		t.Fatal("refilled token refused")
	}
	if l.Allow("a") {
		t.Fatal("more than one token refilled in one second")
	}
	c.t = c.t.Add(time.Hour)
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("after a long pause, event %d refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("refill exceeded the burst")
	}
}

func TestAllowNTakesAllOrNothing(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(1, time.Hour, 5, c.now)
	if !l.AllowN("k", 4) {
		t.Fatal("AllowN(4) of 5 refused")
	}
	if l.AllowN("k", 2) {
		t.Fatal("AllowN(2) with 1 left allowed")
	}
	if !l.AllowN("k", 1) {
		t.Fatal("the refused AllowN took tokens")
	}
	if l.AllowN("other", 6) {
		t.Fatal("AllowN above burst allowed")
	}
}

func TestNilLimiterAllowsEverything(t *testing.T) {
	var l *Limiter
	for range 1000 {
		if !l.Allow("x") {
			t.Fatal("nil limiter refused")
		}
	}
	if New(0, time.Minute, 5, nil) != nil || New(5, time.Minute, 0, nil) != nil || New(-1, time.Minute, 5, nil) != nil {
		t.Fatal("a non-positive rate or burst must disable the limit")
	}
}

func TestBackwardsClockMintsNothing(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(60, time.Minute, 1, c.now)
	l.Allow("a")
	c.t = c.t.Add(-time.Hour)
	if l.Allow("a") {
		t.Fatal("going back in time refilled")
	}
	c.t = c.t.Add(time.Hour)
	if l.Allow("a") {
		t.Fatal("returning to the present refilled")
	}
}

func TestSweepBoundsKeys(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(60, time.Minute, 2, c.now)
	for i := range sweepAt {
		l.Allow(fmt.Sprint(i))
	}
	c.t = c.t.Add(time.Minute)
	l.Allow("new")
	if n := l.Len(); n != 1 {
		t.Fatalf("after the sweep %d keys are tracked, want 1", n)
	}
}
