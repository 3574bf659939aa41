package postgres

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// TestPendingAfterNeverSkips hammers one device with concurrent Enqueues
// while a reader pages through its queue with Pending(after = the last seq
// it saw), the way the server's delivery loop does. Every stored message
// must reach the reader: a message that committed with a seq below one the
// reader had already passed would be missed, and the final drain (which
// also only asks for seqs above the last one seen) would not find it.
func TestPendingAfterNeverSkips(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "pending_never_skips")
	addBob(t, s, 3)
	ctx := t.Context()
	target := store.DeviceRef{Username: "bob", ID: 1}

	const (
		writers = 8
		batches = 150
		page    = 5
	)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stored  = map[uint64]bool{} // seqs enqueued for target
		writing atomic.Int32
		id      atomic.Uint64
	)
	writing.Store(writers)
	for w := range writers {
		wg.Go(func() {
			defer writing.Add(-1)
			for i := range batches {
				// Copies for the target, alone or with other devices
				// (listed in varying order) so batches lock overlapping
				// sets of devices.
				var msgs []store.Message
				switch i % 3 {
				case 0:
					msgs = []store.Message{message(1, id.Add(1), "x")}
				case 1:
					msgs = []store.Message{message(2, id.Add(1), "x"), message(1, id.Add(1), "x")}
				default:
					msgs = []store.Message{message(1, id.Add(1), "x"), message(3, id.Add(1), "x"), message(1, id.Add(1), "x")}
				}
				out, err := s.Enqueue(ctx, msgs)
				if err != nil {
					t.Errorf("writer %d: Enqueue: %v", w, err)
					return
				}
				mu.Lock()
				for _, m := range out {
					if m.Recipient == target {
						stored[m.Seq] = true
					}
				}
				mu.Unlock()
			}
		})
	}

	seen := map[uint64]bool{}
	var after uint64
	read := func() int {
		msgs, err := s.Pending(ctx, target, after, page, time.Now())
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		for _, m := range msgs {
			if m.Seq <= after {
				t.Fatalf("Pending(after=%d) returned seq %d", after, m.Seq)
			}
			seen[m.Seq] = true
			after = m.Seq
		}
		return len(msgs)
	}
	pagesWhileWriting := 0
	for writing.Load() > 0 { // ends when the writers do
		if read() > 0 {
			pagesWhileWriting++
		}
	}
	wg.Wait()
	for read() == page { // the rest of the backlog, bounded by what was written
	}
	if t.Failed() {
		return
	}

	var missed []uint64
	for seq := range stored {
		if !seen[seq] {
			missed = append(missed, seq)
		}
	}
	if len(missed) > 0 {
		t.Fatalf("the reader never saw %d of %d messages (seqs %v): they committed below a seq it had passed",
			len(missed), len(stored), missed)
	}
	if len(seen) != len(stored) {
		t.Fatalf("the reader saw %d messages, %d were stored", len(seen), len(stored))
	}
	t.Logf("%d messages, %d pages read while writers ran", len(stored), pagesWhileWriting)
}

// TestEnqueueRefusesSeqBelowDeviceHighWater checks the guard behind the
// ordering argument: if the sequence ever hands out a value at or below
// one a device already has (a cached or reset sequence), Enqueue fails and
// stores nothing, rather than store a message a paging reader would skip.
func TestEnqueueRefusesSeqBelowDeviceHighWater(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "seq_guard")
	addBob(t, s, 2)
	ctx := t.Context()
	out, err := s.Enqueue(ctx, []store.Message{message(1, 1, "a"), message(1, 2, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ack(ctx, store.DeviceRef{Username: "bob", ID: 1}, []uint64{out[0].Seq, out[1].Seq}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ALTER SEQUENCE message_seq RESTART WITH 1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Enqueue(ctx, []store.Message{message(2, 3, "fine"), message(1, 3, "c")})
	if err == nil {
		t.Fatal("Enqueue stored a message below the device's last seq")
	}
	for _, dev := range []uint32{1, 2} {
		msgs, err := s.Pending(ctx, store.DeviceRef{Username: "bob", ID: dev}, 0, 10, time.Now())
		if err != nil || len(msgs) != 0 {
			t.Fatalf("bob/%d after the refused Enqueue: %d messages, %v", dev, len(msgs), err)
		}
	}
	// Device 2 never had a message, so seqs from 1 are new to it.
	if _, err := s.Enqueue(ctx, []store.Message{message(2, 4, "ok")}); err != nil {
		t.Fatalf("Enqueue to a device without history: %v", err)
	}
}

// TestDeleteExpiredInBatches sweeps more expired messages than one batch
// holds.
func TestDeleteExpiredInBatches(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "delete_expired_batches")
	addBob(t, s, 1)
	ctx := t.Context()
	now := time.Now()
	const n = expiredBatch + 7
	msgs := make([]store.Message, 0, n)
	for i := range uint64(n + 1) {
		m := message(1, i, fmt.Sprint(i))
		m.Expires = now.Add(-time.Second)
		msgs = append(msgs, m)
	}
	msgs[n].Expires = now.Add(time.Hour) // one live message stays
	if _, err := s.Enqueue(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	deleted, err := s.DeleteExpired(ctx, now)
	if err != nil || deleted != n {
		t.Fatalf("DeleteExpired = %d, %v; want %d", deleted, err, n)
	}
	left, err := s.Pending(ctx, store.DeviceRef{Username: "bob", ID: 1}, 0, 10, now.Add(-time.Hour))
	if err != nil || len(left) != 1 {
		t.Fatalf("after DeleteExpired: %d messages, %v; want the live one", len(left), err)
	}
}
