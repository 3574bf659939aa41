package client

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/wire"
)

// count runs a COUNT(*) query on a client's database.
func count(t testing.TB, c *Client, query string, args ...any) int {
	t.Helper()
	var n int
	if err := c.db.QueryRowContext(ctxT(t), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var errCrash = errors.New("simulated crash")

func TestCrashAfterCommitBeforeAckShowsMessageOnce(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bobHome := t.TempDir()
	bob, err := Open(bobHome)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Register(ctxT(t), srv.URL, "bob"); err != nil {
		t.Fatal(err)
	}
	// Contacts already, so no message requests (contacts_test.go).
	knows(t, bob, "alice", "carol")
	mustSend(t, alice, "bob", "exactly once")

	bob.hookBeforeAck = func() error { return errCrash }
	var shown []string
	err = bob.Receive(ctxT(t), 0, func(e Event) { shown = append(shown, e.(*MessageEvent).Text) })
	if !errors.Is(err, errCrash) || len(shown) != 0 {
		t.Fatalf("crashing receive: err %v, shown %q", err, shown)
	}
	bob.Close()

	// After the "restart" the server sends the message again (never
	// acked); it is recognised, and the committed copy is shown once.
	bob, err = Open(bobHome)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: exactly once"}) || len(drops) != 0 {
		t.Fatalf("after restart bob got %q, dropped %v", texts(got), drops)
	}
	if got, _ := collect(t, bob, 0); len(got) != 0 {
		t.Fatalf("shown again: %q", texts(got))
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM history`); n != 1 {
		t.Fatalf("%d history rows, want 1", n)
	}
	// The sessions are intact in both directions.
	mustSend(t, bob, "alice", "reply")
	if got, _ := collect(t, alice, 0); !slices.Equal(texts(got), []string{"bob: reply"}) {
		t.Fatalf("alice got %q", texts(got))
	}
}

func TestCrashBeforeCommitLosesNothing(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "first try fails")
	mustSend(t, alice, "bob", "second message")

	bob.hookBeforeCommit = func() error { return errCrash }
	if err := bob.Receive(ctxT(t), 0, func(Event) { t.Error("event from a rolled-back batch") }); !errors.Is(err, errCrash) {
		t.Fatalf("receive: %v", err)
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM sessions`); n != 0 {
		t.Fatalf("rolled-back batch left %d sessions", n)
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM one_time_prekeys`); n != PrekeyTarget {
		t.Fatalf("rolled-back batch deleted prekeys: %d left", n)
	}
	bob.hookBeforeCommit = nil
	got, _ := collect(t, bob, 0)
	if want := []string{"alice: first try fails", "alice: second message"}; !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q", texts(got), want)
	}
	// The new session consumed exactly one one-time key of each kind.
	if n := count(t, bob, `SELECT COUNT(*) FROM one_time_prekeys`); n != PrekeyTarget-1 {
		t.Fatalf("%d one-time prekeys left, want %d", n, PrekeyTarget-1)
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM kem_prekeys WHERE last_resort = 0`); n != PrekeyTarget-1 {
		t.Fatalf("%d one-time KEM prekeys left, want %d", n, PrekeyTarget-1)
	}
}

func TestDuplicateSubmitIsStoredOnce(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	ctx := ctxT(t)
	a, _ := alice.account()
	content, err := encodeContent(time.Now(), "sent twice")
	if err != nil {
		t.Fatal(err)
	}
	row := outboxRow{id: newMessageID(), to: "bob", content: content}
	if _, err := alice.db.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, 'bob', ?, 0)`, row.id[:], content); err != nil {
		t.Fatal(err)
	}
	cn, err := alice.connection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := alice.peerList(ctx, cn, "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	copies, err := alice.prepareCopies(ctx, cn, a, row, list)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_Send{Send: &wire.SendRequest{MessageId: row.id[:], Recipient: "bob", Copies: copies}}})
		if err != nil || !r.GetSent().GetStored() {
			t.Fatalf("submit %d: %v %v", i, r, err)
		}
	}
	// The same id with different bytes (a retry that re-encrypted) is
	// also deduplicated by the server.
	again, err := alice.prepareCopies(ctx, cn, a, outboxRow{id: row.id, to: "bob", content: content}, list)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_Send{Send: &wire.SendRequest{MessageId: row.id[:], Recipient: "bob", Copies: again}}}); err != nil || !r.GetSent().GetStored() {
		t.Fatalf("resubmit: %v %v", r, err)
	}
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: sent twice"}) || len(drops) != 0 {
		t.Fatalf("bob got %q, dropped %v", texts(got), drops)
	}
}

func TestRetryResendsIdenticalCiphertexts(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	newUser(t, srv.URL, "bob")
	srv.stop()
	// Queued while the server is down: no session can be made yet, so no
	// copy exists.
	if _, err := alice.Send(ctxT(t), "bob", "queued"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send: %v", err)
	}
	if n := count(t, alice, `SELECT COUNT(*) FROM outbox_copies`); n != 0 {
		t.Fatalf("%d copies before any session", n)
	}
	srv.start()
	// Make the copy, then lose the server before the submit.
	ctx := ctxT(t)
	a, _ := alice.account()
	rows, _ := alice.outbox(ctx)
	cn, err := alice.connection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := alice.peerList(ctx, cn, "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	first, err := alice.prepareCopies(ctx, cn, a, rows[0], list)
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.prepareCopies(ctx, cn, a, rows[0], list)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || !slices.Equal(first[0].Content, second[0].Content) {
		t.Fatal("a retry produced a different ciphertext")
	}
}

func TestPrekeysRefilledWhenLow(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bobHome := t.TempDir()
	bob, err := Open(bobHome)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if err := bob.Register(ctxT(t), srv.URL, "bob"); err != nil {
		t.Fatal(err)
	}
	// Contacts already, so no message requests (contacts_test.go).
	knows(t, bob, "alice", "carol")
	ctx := ctxT(t)
	cn, err := alice.connection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := alice.peerList(ctx, cn, "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	// Someone drains bob's one-time keys down to 5.
	for range PrekeyTarget - 5 {
		if _, err := alice.fetchBundles(ctx, cn, list, []uint32{1}); err != nil {
			t.Fatal(err)
		}
	}
	// bob's next connection learns the count is low and uploads more.
	collect(t, bob, 0)
	if n := count(t, bob, `SELECT COUNT(*) FROM one_time_prekeys`); n != 2*PrekeyTarget-5 {
		t.Fatalf("bob holds %d one-time prekeys, want %d", n, 2*PrekeyTarget-5)
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM kem_prekeys WHERE last_resort = 0`); n != 2*PrekeyTarget-5 {
		t.Fatalf("bob holds %d one-time KEM prekeys, want %d", n, 2*PrekeyTarget-5)
	}
	// The server has 100 again: 100 more bundles all carry one-time keys,
	// and a session started from a refilled key works.
	for i := range PrekeyTarget {
		bs, err := alice.fetchBundles(ctx, cn, list, []uint32{1})
		if err != nil {
			t.Fatal(err)
		}
		if bs[1].OneTimePrekey == nil || bs[1].KEMPrekey.Key.LastResort() {
			t.Fatalf("bundle %d after refill has no one-time key", i)
		}
	}
	mustSend(t, alice, "bob", "after refill")
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: after refill"}) || len(drops) != 0 {
		t.Fatalf("bob got %q, dropped %v", texts(got), drops)
	}
}

func TestSignedPrekeyRotatesAndOldSessionsStillStart(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	bob, err := New(Config{Home: t.TempDir(), Now: clock, Warn: func(err error) { t.Errorf("warning: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if err := bob.Register(ctxT(t), srv.URL, "bob"); err != nil {
		t.Fatal(err)
	}
	// Contacts already, so no message requests (contacts_test.go).
	knows(t, bob, "alice", "carol")
	// alice starts a session from the first signed prekey...
	mustSend(t, alice, "bob", "from the old signed prekey")
	// ...and bob rotates before he reads it.
	mu.Lock()
	now = now.Add(signedPrekeyMaxAge + time.Hour)
	mu.Unlock()
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: from the old signed prekey"}) || len(drops) != 0 {
		t.Fatalf("bob got %q, dropped %v", texts(got), drops)
	}
	if n := count(t, bob, `SELECT COUNT(*) FROM signed_prekeys`); n != 2 {
		t.Fatalf("%d signed prekeys after rotation, want 2 (old kept)", n)
	}
	// A new initiator gets the new one.
	carol := newUser(t, srv.URL, "carol")
	var newest uint32
	if err := bob.db.QueryRow(`SELECT MAX(id) FROM signed_prekeys`).Scan(&newest); err != nil {
		t.Fatal(err)
	}
	cn, err := carol.connection(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	list, err := carol.peerList(ctxT(t), cn, "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := carol.fetchBundles(ctxT(t), cn, list, []uint32{1})
	if err != nil {
		t.Fatal(err)
	}
	if id := bs[1].SignedPrekey.ID; id != newest {
		t.Fatalf("bundle after rotation has signed prekey %d, want %d", id, newest)
	}
	mustSend(t, carol, "bob", "from the new signed prekey")
	if got, _ := collect(t, bob, 0); !slices.Equal(texts(got), []string{"carol: from the new signed prekey"}) {
		t.Fatalf("bob got %q", texts(got))
	}
	rec, err := loadRecord(ctxT(t), bob.db, "carol", 1)
	if err != nil || !rec.HasSession() {
		t.Fatalf("no session with carol: %v", err)
	}
}
