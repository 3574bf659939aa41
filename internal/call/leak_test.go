package call

import (
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// TestCallEndsLeaveNoGoroutines runs the timeout, busy and hangup paths
// again and again and checks the goroutine count settles back where it
// was: every call's actor, sender, media and recording goroutines and
// pion's end with the call. The first round warms up what stays by design
// (connections to the server, kept-alive HTTP connections for sealed
// sends).
func TestCallEndsLeaveNoGoroutines(t *testing.T) {
	url, alice, bob := pair(t, devOpts{ring: time.Second})
	carol := newDevice(t, "carol", newClient(t, url, "carol"), devOpts{ring: time.Second})
	round := func() {
		// Nobody answers.
		if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
			t.Fatal(err)
		}
		bob.until(Ringing)
		if e := alice.ended(); e.Reason != ReasonTimeout {
			t.Fatalf("caller ended with %s (%v)", e.Reason, e.Err)
		}
		if e := bob.ended(); e.Reason != ReasonTimeout {
			t.Fatalf("callee ended with %s (%v)", e.Reason, e.Err)
		}
		// Busy, then hung up.
		ac, _, _, _ := connect(t, alice, bob, Options{Video: true}, Media{AudioIn: aOgg, RecordDir: t.TempDir()})
		if _, err := carol.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
			t.Fatal(err)
		}
		if e := carol.ended(); e.Reason != ReasonBusy {
			t.Fatalf("busy call ended with %s (%v)", e.Reason, e.Err)
		}
		hangupBoth(t, ac, alice, bob)
	}
	settle := func(limit int) int {
		var n int
		for deadline := time.Now().Add(guard); ; time.Sleep(50 * time.Millisecond) {
			runtime.GC()
			if n = runtime.NumGoroutine(); n <= limit || time.Now().After(deadline) {
				return n
			}
		}
	}
	round()
	// What the first round left running is the baseline, once the count
	// holds still for a second.
	base, same := -1, 0
	for i := 0; i < 1000 && same < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == base {
			same++
		} else {
			base, same = n, 0
		}
	}
	for range 3 {
		round()
	}
	if n := settle(base); n > base {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("%d goroutines after three more rounds, %d before:\n%s", n, base, b.String())
	}
}
