package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// crashReceive receives into c's store and stops, as a crash would, before
// anything is handed over; it returns c reopened from home.
func crashReceive(t *testing.T, c *Client, home string) *Client {
	t.Helper()
	c.hookBeforeAck = func() error { return errCrash }
	if err := c.Receive(ctxT(t), 0, func(Event) { t.Fatal("handed over before the crash") }); !errors.Is(err, errCrash) {
		t.Fatalf("crashing receive: %v", err)
	}
	c.Close()
	c, err := Open(home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEventsRedeliveredAfterCrash: reactions, edits, receipts, timer
// changes and deletes committed by a receive that stops before handing
// them over are handed over by the next one, after the restart, once.
func TestEventsRedeliveredAfterCrash(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	aliceHome := t.TempDir()
	alice, err := Open(aliceHome)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Register(ctxT(t), srv.URL, "alice"); err != nil {
		t.Fatal(err)
	}
	befriend(t, alice, "alice", bob, "bob")
	everydayAll(t, alice)
	everydayAll(t, bob)
	ctx := ctxT(t)
	s := func(id MessageID) string { return id.String()[:8] }

	hello := mustSend(t, alice, "bob", "hello")
	mine := mustSend(t, bob, "alice", "typo")
	want(t, "bob", everydayAll(t, bob), "alice: hello")
	if _, err := bob.React(ctx, "alice", hello, "👍", false); err != nil {
		t.Fatal(err)
	}
	alice = crashReceive(t, alice, aliceHome)
	// Messages first, then the events, in the order they came. (The crash
	// may have come after only a first part of the backlog; the rest is
	// received live, in the same order.)
	want(t, "alice after the restart", everydayAll(t, alice),
		"bob: typo",
		"receipt bob delivered "+s(hello),
		"reaction bob 👍 "+s(hello)+" false")
	want(t, "alice once more", everydayAll(t, alice))

	if _, err := bob.Edit(ctx, "alice", mine, "fixed"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SetTimer(ctx, "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	alice = crashReceive(t, alice, aliceHome)
	want(t, "alice after the second restart", everydayAll(t, alice), "edit bob "+s(mine)+": fixed", "timer bob 1h0m0s")

	if _, err := bob.Delete(ctx, "alice", mine); err != nil {
		t.Fatal(err)
	}
	alice = crashReceive(t, alice, aliceHome)
	want(t, "alice after the third restart", everydayAll(t, alice), "delete bob "+s(mine))
	var n int
	if err := alice.db.QueryRow(`SELECT COUNT(*) FROM pending_events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events still kept (%v)", n, err)
	}

	// A message deleted for everyone before it was shown is not handed
	// over as an empty one; the delete that follows says what happened.
	gone := mustSend(t, bob, "alice", "gone")
	alice = crashReceive(t, alice, aliceHome)
	if _, err := alice.db.Exec(`UPDATE history SET body = '', deleted = 1 WHERE message_id = ?`, gone[:]); err != nil {
		t.Fatal(err)
	}
	want(t, "alice after a deletion", everydayAll(t, alice))
}

// TestKeptEditErasedWithItsMessage: an edit kept from before a crash
// holds the message's new text; when the disappearing message expires
// first, the text goes with it and is not handed over.
func TestKeptEditErasedWithItsMessage(t *testing.T) {
	k := &clock{}
	srv := startServer(t)
	bob := newUserAt(t, srv.URL, "bob", k)
	alice := newUserAt(t, srv.URL, "alice", k)
	befriend(t, alice, "alice", bob, "bob")
	everydayAll(t, alice)
	everydayAll(t, bob)
	ctx := ctxT(t)
	if _, err := bob.SetTimer(ctx, "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	msg := mustSend(t, bob, "alice", "soon gone")
	everydayAll(t, alice)
	if _, err := bob.Edit(ctx, "alice", msg, "CANARY-kept-edit"); err != nil {
		t.Fatal(err)
	}
	alice.hookBeforeAck = func() error { return errCrash }
	if err := alice.Receive(ctx, 0, func(Event) {}); !errors.Is(err, errCrash) {
		t.Fatalf("crashing receive: %v", err)
	}
	alice.hookBeforeAck = nil
	k.advance(2 * time.Minute)
	want(t, "alice after expiry", everydayAll(t, alice))
	var n int
	if err := alice.db.QueryRow(`SELECT COUNT(*) FROM pending_events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events still kept (%v)", n, err)
	}
}

func TestStoredEventRoundTrip(t *testing.T) {
	m := Meta{ID: newMessageID(), From: "alice", To: "bob", Device: 2, Sent: time.UnixMilli(1000), Received: time.UnixMilli(2000), Group: bytes.Repeat([]byte{7}, 16)}
	for _, e := range []Event{
		&ReactionEvent{Meta: m, Target: newMessageID(), Emoji: "👍"},
		&ReactionEvent{Meta: m, Target: newMessageID(), Removed: true},
		&EditEvent{Meta: m, Target: newMessageID(), Text: "new"},
		&DeleteEvent{Meta: m, Target: newMessageID()},
		&ReceiptEvent{Meta: m, Kind: Read, Targets: []MessageID{newMessageID(), newMessageID()}},
		&TimerEvent{Meta: m, Timer: time.Hour},
		&TimerEvent{Meta: m},
	} {
		s, _, ok := storeEvent(e)
		if !ok {
			t.Fatalf("%T not kept", e)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := loadEvent(b)
		if err != nil {
			t.Fatalf("%T: %v", e, err)
		}
		if g, w := mustJSON(t, got), mustJSON(t, e); g != w {
			t.Fatalf("round trip of %T: %s, want %s", e, g, w)
		}
	}
	if _, _, ok := storeEvent(&TypingEvent{Meta: m}); ok {
		t.Fatal("a typing indicator was kept")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzLoadEvent: whatever the pending_events table holds, loadEvent
// returns an event or an error, never panics, and what it returns stores
// back to the same event.
func FuzzLoadEvent(f *testing.F) {
	id := bytes.Repeat([]byte{1}, 16)
	for _, s := range []storedEvent{
		{Kind: "reaction", ID: id, From: "bob", Target: id, Emoji: "👍"},
		{Kind: "receipt", ID: id, From: "bob", Receipt: 2, Targets: [][]byte{id}},
		{Kind: "timer", ID: id, From: "bob", Seconds: 3600, Group: id},
		{Kind: "edit", ID: id, From: "bob", Target: id, Text: "x"},
	} {
		b, _ := json.Marshal(s)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"timer","id":"AQEBAQEBAQEBAQEBAQEBAQ==","seconds":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := loadEvent(b)
		if err != nil {
			return
		}
		s, _, ok := storeEvent(e)
		if !ok {
			t.Fatalf("loaded %T, which is not kept", e)
		}
		b2, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := loadEvent(b2)
		if err != nil || mustJSON(t, e2) != mustJSON(t, e) {
			t.Fatalf("%T does not store back: %v", e, err)
		}
	})
}
