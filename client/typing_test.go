package client

import (
	"testing"
	"time"
)

// Typing indicators are ephemeral: one that cannot be sent is dropped,
// not queued to arrive late; a stale one is not shown; strangers and big
// groups get none.
func TestTypingIsEphemeral(t *testing.T) {
	k := &clock{}
	srv := startServer(t)
	alice := newUserAt(t, srv.URL, "alice", k)
	bob := newUserAt(t, srv.URL, "bob", k)
	carol := newUserAt(t, srv.URL, "carol", k)
	befriend(t, alice, "alice", bob, "bob")
	ctx := ctxT(t)

	// Offline: an error, and nothing left behind to be sent later.
	srv.stop()
	if err := alice.SendTyping(ctx, "bob", true); err == nil {
		t.Fatal("typing with the server down: no error")
	}
	var queued int
	if err := alice.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&queued); err != nil || queued != 0 {
		t.Fatalf("outbox holds %d rows after a failed typing indicator (%v)", queued, err)
	}
	srv.start()
	if _, err := alice.Send(ctx, "bob", "back"); err != nil {
		t.Fatal(err)
	}
	want(t, "bob", everyday(t, bob), "alice: back")

	// Live: shown.
	if err := alice.SendTyping(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	want(t, "bob", everyday(t, bob), "typing alice true")

	// Stale (read a minute later): not shown.
	if err := alice.SendTyping(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	k.advance(time.Minute)
	want(t, "bob", everyday(t, bob))

	// Not a contact: nothing is sent, and carol is not made a contact.
	if err := alice.SendTyping(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	want(t, "carol", everyday(t, carol))
	if c, err := alice.ContactInfo(ctx, "carol"); err != nil || c.State == Accepted {
		t.Fatalf("carol after a typing indicator: %+v, %v", c, err)
	}

	// A small group: every other member sees it, with the group.
	id, err := alice.CreateGroup(ctx, "Typists", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{bob, carol} {
		everyday(t, c)
	}
	if err := alice.SendTyping(ctx, GroupConversation(id), true); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Client{"bob": bob, "carol": carol} {
		var got []string
		if err := c.Receive(ctx, 0, func(e Event) {
			if e, ok := e.(*TypingEvent); ok {
				got = append(got, e.From+" "+e.GroupName)
			}
		}); err != nil {
			t.Fatal(err)
		}
		want(t, name, got, "alice Typists")
	}
}
