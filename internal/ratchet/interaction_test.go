package ratchet_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/hush-chat/hush/internal/ratchet"
)

type inFlight struct {
	ct, pt []byte
}

type direction struct {
	from, to *party
	queue    []*inFlight
	done     []*inFlight // delivered, kept for duplicate deliveries
	sent     int
}

// runSchedule plays a schedule of sends, deliveries, drops, duplicates and
// reorders between alice and bob. Invariants: every delivered message that
// is not a duplicate decrypts exactly once to what was sent; a duplicate is
// refused and changes nothing; drops never break later
// messages (the schedule stays inside the skip limits by construction: at
// most maxSends messages in all).
func runSchedule(t testing.TB, ops []byte) {
	const maxSends = 400
	alice, bob := newPair(t)
	ab := &direction{from: alice, to: bob}
	ba := &direction{from: bob, to: alice}
	bobHasSession := false
	sends := 0
	for i := 0; i+1 < len(ops); i += 2 {
		op, arg := ops[i]%8, int(ops[i+1])
		d := ab
		if op&1 == 1 {
			d = ba
		}
		switch op {
		case 0, 1: // send
			if sends >= maxSends || (d == ba && !bobHasSession) {
				continue
			}
			sends++
			pt := msg("%s #%d", d.from.dev.Username, d.sent)
			d.sent++
			d.queue = append(d.queue, &inFlight{ct: d.from.encrypt(t, pt), pt: pt})
		case 2, 3: // deliver the arg-th queued message (reordering)
			if len(d.queue) == 0 {
				continue
			}
			k := arg % len(d.queue)
			m := d.queue[k]
			d.queue = append(d.queue[:k], d.queue[k+1:]...)
			d.to.mustDecrypt(t, m.ct, m.pt)
			d.done = append(d.done, m)
			if d == ab {
				bobHasSession = true
			}
		case 4, 5: // drop
			if len(d.queue) == 0 {
				continue
			}
			k := arg % len(d.queue)
			d.queue = append(d.queue[:k], d.queue[k+1:]...)
		case 6, 7: // duplicate an already delivered message, or reload state
			if arg%4 == 0 {
				for _, p := range []*party{alice, bob} {
					r, err := ratchet.UnmarshalRecord(p.rec.Marshal())
					if err != nil {
						t.Fatalf("reload: %v", err)
					}
					p.rec = r
				}
				continue
			}
			if len(d.done) == 0 {
				continue
			}
			m := d.done[arg%len(d.done)]
			before := d.to.rec.Marshal()
			pt, err := d.to.decrypt(m.ct)
			if err == nil {
				t.Fatalf("duplicate delivered again as %q", pt)
			}
			// A replay from a chain newer than the kept receiving chains is
			// recognised as a duplicate; one from an older, forgotten chain
			// is indistinguishable from a forgery (docs/protocol.md §5.6).
			if !errors.Is(err, ratchet.ErrDuplicate) && !errors.Is(err, ratchet.ErrTampered) {
				t.Fatalf("duplicate: %v, want ErrDuplicate or ErrTampered", err)
			}
			if !bytes.Equal(before, d.to.rec.Marshal()) {
				t.Fatal("duplicate changed state")
			}
		}
	}
	// Drain: everything still queued arrives and decrypts.
	for _, d := range []*direction{ab, ba} {
		for _, m := range d.queue {
			d.to.mustDecrypt(t, m.ct, m.pt)
		}
	}
}

func FuzzInteraction(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 1, 1, 0, 3, 0, 2, 0, 6, 1})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 4, 1, 2, 0, 1, 0, 1, 0, 5, 0, 3, 0, 7, 0, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4000 {
			ops = ops[:4000]
		}
		runSchedule(t, ops)
	})
}

// TestInteractionLongRun is a long fixed-seed schedule, so the invariants
// are checked in every test run, not only when fuzzing.
func TestInteractionLongRun(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 42))
		ops := make([]byte, 6000)
		for i := range ops {
			ops[i] = byte(rng.UintN(256))
		}
		runSchedule(t, ops)
	}
}
