package client

import (
	"fmt"
	"testing"
)

// BenchmarkSendReceive100 sends 100 texts from alice to bob and receives
// them, bob's delivery receipts included (one per batch), and alice's
// receipt events: the whole cost of a message with everyday messaging.
func BenchmarkSendReceive100(b *testing.B) {
	srv := startServer(b)
	alice := newUser(b, srv.URL, "alice")
	bob := newUser(b, srv.URL, "bob")
	knows(b, bob, "alice")
	ctx := ctxT(b)
	for b.Loop() {
		for i := range 100 {
			if _, err := alice.Send(ctx, "bob", fmt.Sprint("message ", i)); err != nil {
				b.Fatal(err)
			}
		}
		got := 0
		if err := bob.Receive(ctx, 0, func(e Event) {
			if _, ok := e.(*MessageEvent); ok {
				got++
			}
		}); err != nil || got != 100 {
			b.Fatalf("bob got %d: %v", got, err)
		}
		receipts := 0
		if err := alice.Receive(ctx, 0, func(e Event) {
			if r, ok := e.(*ReceiptEvent); ok {
				receipts += len(r.Targets)
			}
		}); err != nil || receipts != 100 {
			b.Fatalf("alice got %d receipts: %v", receipts, err)
		}
	}
}

// BenchmarkReactEdit measures a reaction and an edit of one message, sent
// and received.
func BenchmarkReactEdit(b *testing.B) {
	srv := startServer(b)
	alice := newUser(b, srv.URL, "alice")
	bob := newUser(b, srv.URL, "bob")
	knows(b, bob, "alice")
	ctx := ctxT(b)
	id, err := alice.Send(ctx, "bob", "react to me")
	if err != nil {
		b.Fatal(err)
	}
	if err := bob.Receive(ctx, 0, func(Event) {}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := bob.React(ctx, "alice", id, "👍", false); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.Edit(ctx, "bob", id, "edited"); err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := bob.Receive(ctx, 0, func(e Event) {
			if _, ok := e.(*EditEvent); ok {
				n++
			}
		}); err != nil || n != 1 {
			b.Fatalf("bob got %d edits: %v", n, err)
		}
		if err := alice.Receive(ctx, 0, func(Event) {}); err != nil {
			b.Fatal(err)
		}
	}
}
