package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

func testEnqueueAndPending(t *testing.T, h *harness) {
	s := h.store(t, "enqueue_and_pending")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}

	sealed := newMessage(b1, 2, "sealed")
	sealed.Sender, sealed.SenderDevice = "", 0 // sealed sender: no sender stored
	sealed.Received = t0.Add(time.Second)
	in := []store.Message{newMessage(b1, 1, "copy for 1"), newMessage(b2, 1, "copy for 2"), sealed}
	out, err := s.Enqueue(ctx, in)
	must(t, err, "Enqueue")
	if len(out) != len(in) {
		t.Fatalf("Enqueue returned %d messages for %d", len(out), len(in))
	}
	for i := range in {
		if out[i].Seq == 0 || (i > 0 && out[i].Seq <= out[i-1].Seq) {
			t.Fatalf("Enqueue seqs %v: want non-zero and increasing in batch order", seqs(out))
		}
		want := in[i]
		want.Seq = out[i].Seq
		checkMessage(t, out[i], want)
	}

	got := pending(t, s, b1)
	if len(got) != 2 {
		t.Fatalf("Pending(bob/1) returned %d messages, want 2", len(got))
	}
	checkMessage(t, got[0], out[0])
	checkMessage(t, got[1], out[2])
	got = pending(t, s, b2)
	if len(got) != 1 {
		t.Fatalf("Pending(bob/2) returned %d messages, want 1", len(got))
	}
	checkMessage(t, got[0], out[1])

	out, err = s.Enqueue(ctx, nil)
	must(t, err, "Enqueue(nil)")
	if len(out) != 0 {
		t.Fatalf("Enqueue(nil) returned %d messages", len(out))
	}
}

func testEnqueueAllOrNone(t *testing.T, h *harness) {
	s := h.store(t, "enqueue_all_or_none")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}

	for _, missing := range []store.DeviceRef{{Username: "bob", ID: 9}, {Username: "nobody", ID: 1}} {
		// The missing recipient comes last, after copies that would succeed.
		_, err := s.Enqueue(ctx, []store.Message{
			newMessage(b1, 1, "a"), newMessage(b2, 1, "a"), newMessage(missing, 1, "a"),
		})
		wantErr(t, err, store.ErrNotFound, fmt.Sprintf("Enqueue with a copy for %v", missing))
		for _, ref := range []store.DeviceRef{b1, b2} {
			if msgs := pending(t, s, ref); len(msgs) != 0 {
				t.Fatalf("failed Enqueue left %d messages for %v", len(msgs), ref)
			}
		}
	}
	// The same message id can be stored once the batch is right.
	out, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 1, "a"), newMessage(b2, 1, "a")})
	must(t, err, "Enqueue")
	if len(out) != 2 || len(pending(t, s, b1)) != 1 || len(pending(t, s, b2)) != 1 {
		t.Fatal("retried Enqueue did not store one copy per device")
	}
}

func testEnqueueIdempotent(t *testing.T, h *harness) {
	s := h.store(t, "enqueue_idempotent")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	createAccount(t, s, "carol", 1)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}
	c1 := store.DeviceRef{Username: "carol", ID: 1}

	first, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 1, "original")})
	must(t, err, "Enqueue")

	// A retry with different content (a buggy or hostile client) keeps the
	// first copy; a new message in the same batch is stored.
	retry := newMessage(b1, 1, "changed")
	retry.Received = t0.Add(time.Minute)
	out, err := s.Enqueue(ctx, []store.Message{retry, newMessage(b1, 2, "second")})
	must(t, err, "Enqueue retry")
	checkMessage(t, out[0], first[0])
	if out[1].Seq <= first[0].Seq {
		t.Fatalf("new message got seq %d, not after %d", out[1].Seq, first[0].Seq)
	}

	// The same id twice in one batch is stored once.
	out, err = s.Enqueue(ctx, []store.Message{newMessage(b1, 3, "x"), newMessage(b1, 3, "y")})
	must(t, err, "Enqueue with a duplicate inside the batch")
	if out[0].Seq != out[1].Seq || string(out[1].Content) != "x" {
		t.Fatalf("duplicate inside a batch: seqs %v, second content %q; want one stored copy \"x\"", seqs(out), out[1].Content)
	}

	got := pending(t, s, b1)
	if len(got) != 3 || string(got[0].Content) != "original" || string(got[1].Content) != "second" || string(got[2].Content) != "x" {
		t.Fatalf("Pending(bob/1) = %+v; want original, second, x", got)
	}

	// Message ids are unique per recipient device only.
	out, err = s.Enqueue(ctx, []store.Message{newMessage(b2, 1, "for 2"), newMessage(c1, 1, "for carol")})
	must(t, err, "Enqueue same id to other devices")
	if out[0].Seq == first[0].Seq || out[1].Seq == first[0].Seq || out[0].Seq == out[1].Seq {
		t.Fatalf("same message id for other devices shares a seq: %v and %d", seqs(out), first[0].Seq)
	}
	if len(pending(t, s, b2)) != 1 || len(pending(t, s, c1)) != 1 {
		t.Fatal("same message id for another device was not stored")
	}
}

func testPendingAfterAndLimit(t *testing.T, h *harness) {
	s := h.store(t, "pending_after_and_limit")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}
	// Interleave another device's messages so bob/1's seqs have gaps.
	var want []uint64
	for i := range uint64(10) {
		out, err := s.Enqueue(ctx, []store.Message{newMessage(b2, i, "other"), newMessage(b1, i, fmt.Sprint(i))})
		must(t, err, "Enqueue")
		want = append(want, out[1].Seq)
	}

	page, err := s.Pending(ctx, b1, 0, 3, t0)
	must(t, err, "Pending")
	if !slices.Equal(seqs(page), want[:3]) {
		t.Fatalf("first page %v, want %v", seqs(page), want[:3])
	}
	page, err = s.Pending(ctx, b1, page[2].Seq, 100, t0)
	must(t, err, "Pending")
	if !slices.Equal(seqs(page), want[3:]) {
		t.Fatalf("second page %v, want %v", seqs(page), want[3:])
	}
	for i, m := range page {
		if string(m.Content) != fmt.Sprint(i+3) {
			t.Fatalf("message %d has content %q, want %q", i+3, m.Content, fmt.Sprint(i+3))
		}
	}
	// after need not be one of the device's seqs.
	page, err = s.Pending(ctx, b1, want[4]-1, 1, t0)
	must(t, err, "Pending")
	if !slices.Equal(seqs(page), want[4:5]) {
		t.Fatalf("page after %d: %v, want %v", want[4]-1, seqs(page), want[4:5])
	}
	page, err = s.Pending(ctx, b1, want[9], 100, t0)
	must(t, err, "Pending")
	if len(page) != 0 {
		t.Fatalf("page after the last seq: %v", seqs(page))
	}
	page, err = s.Pending(ctx, store.DeviceRef{Username: "bob", ID: 3}, 0, 100, t0)
	if err == nil && len(page) != 0 {
		t.Fatalf("Pending for a device that does not exist returned %v", seqs(page))
	}
}

func testPendingAndDeleteExpired(t *testing.T, h *harness) {
	s := h.store(t, "pending_and_delete_expired")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}
	soon, later := t0.Add(time.Hour), t0.Add(2*time.Hour)
	m1, m2, m3 := newMessage(b1, 1, "soon"), newMessage(b1, 2, "later"), newMessage(b2, 1, "soon")
	m1.Expires, m2.Expires, m3.Expires = soon, later, soon
	_, err := s.Enqueue(ctx, []store.Message{m1, m2, m3})
	must(t, err, "Enqueue")

	count := func(ref store.DeviceRef, now time.Time) int {
		t.Helper()
		msgs, err := s.Pending(ctx, ref, 0, 100, now)
		must(t, err, "Pending")
		return len(msgs)
	}
	if n := count(b1, soon); n != 2 {
		t.Fatalf("Pending at exactly Expires returned %d messages, want 2 (still live)", n)
	}
	if n := count(b1, soon.Add(time.Millisecond)); n != 1 {
		t.Fatalf("Pending after the first expiry returned %d messages, want 1", n)
	}
	if n := count(b1, later.Add(time.Millisecond)); n != 0 {
		t.Fatalf("Pending after every expiry returned %d messages, want 0", n)
	}

	n, err := s.DeleteExpired(ctx, soon)
	must(t, err, "DeleteExpired")
	if n != 0 {
		t.Fatalf("DeleteExpired at exactly Expires deleted %d, want 0", n)
	}
	n, err = s.DeleteExpired(ctx, soon.Add(time.Millisecond))
	must(t, err, "DeleteExpired")
	if n != 2 {
		t.Fatalf("DeleteExpired deleted %d, want 2", n)
	}
	// Deleted for good: gone even when asking with an earlier clock.
	if n := count(b1, t0); n != 1 {
		t.Fatalf("after DeleteExpired bob/1 has %d messages, want 1", n)
	}
	if n := count(b2, t0); n != 0 {
		t.Fatalf("after DeleteExpired bob/2 has %d messages, want 0", n)
	}
}

func testAckOnlyOwnMessages(t *testing.T, h *harness) {
	s := h.store(t, "ack_only_own_messages")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}
	out, err := s.Enqueue(ctx, []store.Message{
		newMessage(b1, 1, "a"), newMessage(b1, 2, "b"), newMessage(b1, 3, "c"), newMessage(b2, 1, "d"),
	})
	must(t, err, "Enqueue")
	a, b, c, d := out[0].Seq, out[1].Seq, out[2].Seq, out[3].Seq

	ack := func(ref store.DeviceRef, want int, seqs ...uint64) {
		t.Helper()
		n, err := s.Ack(ctx, ref, seqs)
		must(t, err, "Ack")
		if n != want {
			t.Fatalf("Ack(%v, %v) deleted %d, want %d", ref, seqs, n, want)
		}
	}
	ack(b1, 1, a, d, d+1000) // d is bob/2's, d+1000 does not exist
	ack(b2, 0, b, c)         // bob/1's messages cannot be acked by bob/2
	ack(b1, 0)
	if got := seqs(pending(t, s, b1)); !slices.Equal(got, []uint64{b, c}) {
		t.Fatalf("bob/1 pending %v, want %v", got, []uint64{b, c})
	}
	if got := seqs(pending(t, s, b2)); !slices.Equal(got, []uint64{d}) {
		t.Fatalf("bob/2 pending %v, want %v", got, []uint64{d})
	}
	ack(b1, 2, b, c, b)
	ack(b1, 0, a, b, c) // acking again is harmless
	ack(store.DeviceRef{Username: "nobody", ID: 1}, 0, d)
	if got := seqs(pending(t, s, b2)); !slices.Equal(got, []uint64{d}) {
		t.Fatalf("bob/2 pending %v, want %v", got, []uint64{d})
	}

	// A large ack in one call.
	var many []store.Message
	for i := range uint64(600) {
		many = append(many, newMessage(b1, 100+i, "bulk"))
	}
	out, err = s.Enqueue(ctx, many)
	must(t, err, "Enqueue")
	ack(b1, 600, seqs(out)...)
	if n := len(pending(t, s, b1)); n != 0 {
		t.Fatalf("%d messages left after acking all", n)
	}
}

// testConcurrentEnqueue has several senders enqueue at once: every copy
// gets its own seq, each sender sees its seqs increase, and the queue
// holds everything in seq order.
func testConcurrentEnqueue(t *testing.T, h *harness) {
	s := h.store(t, "concurrent_enqueue")
	ctx := t.Context()
	createAccount(t, s, "bob", 1, 2)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	b2 := store.DeviceRef{Username: "bob", ID: 2}
	const senders, each = 8, 25
	got := make([][]uint64, senders)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				id := uint64(g*1000 + i)
				out, err := s.Enqueue(ctx, []store.Message{
					newMessage(b1, id, fmt.Sprint(id)), newMessage(b2, id, fmt.Sprint(id)),
				})
				if err != nil {
					t.Errorf("sender %d: Enqueue: %v", g, err)
					return
				}
				got[g] = append(got[g], out[0].Seq, out[1].Seq)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := map[uint64]bool{}
	for g, ss := range got {
		for i, seq := range ss {
			if i > 0 && seq <= ss[i-1] {
				t.Fatalf("sender %d: seqs not increasing: %v", g, ss)
			}
			if all[seq] {
				t.Fatalf("seq %d assigned twice", seq)
			}
			all[seq] = true
		}
	}
	for _, ref := range []store.DeviceRef{b1, b2} {
		msgs := pending(t, s, ref)
		if len(msgs) != senders*each {
			t.Fatalf("%v has %d messages, want %d", ref, len(msgs), senders*each)
		}
		for i, m := range msgs {
			if !all[m.Seq] || (i > 0 && m.Seq <= msgs[i-1].Seq) {
				t.Fatalf("%v: pending seqs out of order or unknown at %d: %v", ref, i, seqs(msgs))
			}
		}
	}
}

func testSeqsNeverReused(t *testing.T, h *harness) {
	s := h.store(t, "seqs_never_reused")
	ctx := t.Context()
	createAccount(t, s, "bob", 1)
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	out, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 1, "a"), newMessage(b1, 2, "b")})
	must(t, err, "Enqueue")
	n, err := s.Ack(ctx, b1, seqs(out))
	must(t, err, "Ack")
	if n != 2 {
		t.Fatalf("Ack deleted %d, want 2", n)
	}
	// The queue is empty; a client that paged up to out[1].Seq must still
	// see the next message.
	next, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 3, "c")})
	must(t, err, "Enqueue")
	if next[0].Seq <= out[1].Seq {
		t.Fatalf("seq %d reused after acking up to %d", next[0].Seq, out[1].Seq)
	}
}
