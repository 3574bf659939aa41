package client

import (
	"crypto/sha256"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/wire"
)

// knows makes c treat peer as a contact, as if it had accepted them
// earlier, without any message: for tests about other things than
// message requests.
func knows(t testing.TB, c *Client, peers ...string) {
	t.Helper()
	for _, p := range peers {
		if err := setContact(ctxT(t), c.db, p, c.now(), `state = ?`, stateContact); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMessageRequestsAcceptAndContacts(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	dave := newUser(t, srv.URL, "dave")
	ctx := ctxT(t)

	// A stranger's messages wait in the requests, not in the history.
	mustSend(t, carol, "bob", "hi, I'm carol")
	mustSend(t, carol, "bob", "are you there?")
	want(t, "bob", events(t, bob), "request carol", "request carol")
	if h, _ := bob.History(ctx, "carol", 0); len(h) != 0 {
		t.Fatalf("requests in the history: %v", h)
	}
	reqs, err := bob.Requests(ctx)
	if err != nil || len(reqs) != 2 || reqs[0].Peer != "carol" || reqs[0].Text != "hi, I'm carol" {
		t.Fatalf("requests: %v %v", reqs, err)
	}
	if k, _ := bob.ContactInfo(ctx, "carol"); k.State != Requested {
		t.Fatalf("carol is %v", k.State)
	}
	// Replying before accepting is refused, and nothing is sent.
	if _, err := bob.Send(ctx, "carol", "hello?"); err == nil || !strings.Contains(err.Error(), "accept") {
		t.Fatalf("reply to a request: %v", err)
	}
	if cs, _ := bob.Contacts(ctx); len(cs) != 0 {
		t.Fatalf("contacts before accepting: %v", cs)
	}
	// Nothing shows again on the next receive.
	want(t, "bob", events(t, bob))

	// Accepting hands the requests over, moves them to the history and
	// gives carol bob's token, so her next message is sealed.
	pending, err := bob.Accept(ctx, "carol")
	if err != nil || len(pending) != 2 || pending[1].Text != "are you there?" {
		t.Fatalf("accept: %v %v", pending, err)
	}
	if reqs, _ := bob.Requests(ctx); len(reqs) != 0 {
		t.Fatalf("requests after accepting: %v", reqs)
	}
	want(t, "bob's history", conversation(t, bob, "carol"), "< hi, I'm carol", "< are you there?")
	want(t, "carol", events(t, carol))
	if k, _ := carol.ContactInfo(ctx, "bob"); !k.Sealed || k.State != Accepted {
		t.Fatalf("carol's view of bob: %+v", k)
	}
	mustSend(t, carol, "bob", "thanks")
	mustSend(t, bob, "carol", "welcome")
	want(t, "bob", events(t, bob), "carol: thanks")
	want(t, "carol", events(t, carol), "bob: welcome")

	// Writing first makes the other one a contact: dave's answer to bob is
	// shown at once.
	mustSend(t, bob, "dave", "hello dave")
	want(t, "dave", events(t, dave), "request bob")
	if _, err := dave.Accept(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, dave, "bob", "hi bob")
	want(t, "bob", events(t, bob), "dave: hi bob")

	cs, err := bob.Contacts(ctx)
	if err != nil || len(cs) != 2 || cs[0].Username != "carol" || cs[1].Username != "dave" || cs[0].Verified || cs[0].Blocked {
		t.Fatalf("contacts: %+v %v", cs, err)
	}
	// Accepting someone unknown fails; accepting oneself too.
	if _, err := bob.Accept(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("accept nobody: %v", err)
	}
	if _, err := bob.Accept(ctx, "bob"); err == nil {
		t.Fatal("accepted oneself")
	}
}

func TestBlockedSenderNeverShownSealedOrNot(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	db := serverDB(t, srv)

	if err := bob.Block(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	var blocked []string
	rs, err := db.Query(`SELECT blocked FROM blocked WHERE username = 'bob' ORDER BY blocked`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var b string
		rs.Scan(&b)
		blocked = append(blocked, b)
	}
	rs.Close()
	want(t, "the server's blocked list of bob", blocked, "alice", "carol")

	// Sealed: the server cannot tell, bob's client drops it silently.
	mustSend(t, alice, "bob", "sealed while blocked")
	// Authenticated (a stranger has no token): the server drops it
	// silently and says it was stored.
	id := mustSend(t, carol, "bob", "authenticated while blocked")
	if rows := rowsHolding(t, db, id[:]); len(rows) != 0 {
		t.Fatalf("the server stored a blocked sender's message: %q", rows)
	}
	want(t, "bob", events(t, bob))
	if reqs, _ := bob.Requests(ctx); len(reqs) != 0 {
		t.Fatalf("requests from blocked senders: %v", reqs)
	}
	k, _ := bob.ContactInfo(ctx, "alice")
	if !k.Blocked {
		t.Fatal("alice not shown as blocked")
	}
	if _, err := bob.Send(ctx, "alice", "to a blocked one"); err == nil {
		t.Fatal("sent to a blocked account")
	}

	if err := bob.Unblock(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "after unblock")
	want(t, "bob", events(t, bob), "alice: after unblock")
	if cs, _ := bob.Contacts(ctx); len(cs) != 2 || cs[1].Username != "carol" || !cs[1].Blocked {
		t.Fatalf("contacts: %+v", cs)
	}
}

func TestBlockedListReachesTheServerOnTheNextConnection(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	srv.stop()
	if err := bob.Block(ctxT(t), "carol"); err != nil {
		t.Fatal(err)
	}
	srv.start()
	want(t, "bob", events(t, bob)) // connects, and sends the list
	id := mustSend(t, carol, "bob", "blocked")
	if rows := rowsHolding(t, serverDB(t, srv), id[:]); len(rows) != 0 {
		t.Fatalf("the server stored a blocked sender's message: %q", rows)
	}
}

func TestAcceptOnOneDeviceAcceptsOnAll(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob1 := newUser(t, srv.URL, "bob")
	bob2 := linkDevice(t, srv.URL, bob1, "bob laptop", false)
	mustSend(t, alice, "bob", "hi bob")
	want(t, "bob1", events(t, bob1), "request alice")
	want(t, "bob2", events(t, bob2), "request alice")
	if _, err := bob1.Accept(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	// bob's laptop learns of the acceptance and shows the request now.
	want(t, "bob2", events(t, bob2), "alice: hi bob")
	if k, _ := bob2.ContactInfo(ctxT(t), "alice"); k.State != Accepted || !k.Sealed {
		t.Fatalf("bob's laptop's view of alice: %+v", k)
	}
	want(t, "alice", events(t, alice))
	mustSend(t, alice, "bob", "sealed to both")
	want(t, "bob1", events(t, bob1), "alice: sealed to both")
	want(t, "bob2", events(t, bob2), "alice: sealed to both")
}

// A stranger or an account whose request is pending has no conversation
// yet: its typing indicators and timer changes are ignored, not shown or
// applied; once accepted they are.
func TestStrangersCannotTypeOrSetTheTimer(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	ctx := ctxT(t)
	controls := func() {
		t.Helper()
		sendRaw(t, carol, "bob", &wire.Content{Body: &wire.Content_Typing{Typing: &wire.Typing{Started: true}}})
		sendRaw(t, carol, "bob", &wire.Content{Body: &wire.Content_Timer{Timer: &wire.TimerUpdate{Seconds: 60}}})
	}
	timer := func() time.Duration {
		t.Helper()
		d, err := bob.Timer(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	controls()
	want(t, "bob from a stranger", everydayAll(t, bob))
	if d := timer(); d != 0 {
		t.Fatalf("a stranger set bob's timer to %v", d)
	}
	mustSend(t, carol, "bob", "hi, I'm carol")
	want(t, "bob", events(t, bob), "request carol")
	controls()
	want(t, "bob from a pending request", everydayAll(t, bob))
	if d := timer(); d != 0 {
		t.Fatalf("a pending request set bob's timer to %v", d)
	}

	if _, err := bob.Accept(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	controls()
	want(t, "bob from a contact", everydayAll(t, bob), "typing carol true", "timer carol 1m0s")
	if d := timer(); d != time.Minute {
		t.Fatalf("a contact's timer: %v", d)
	}
}

// A file from a stranger waits as a request with its attachment; once
// accepted, on this device and through the sync copy on the other, it is
// in the history and downloads intact.
func TestRequestKeepsItsFile(t *testing.T) {
	srv := startServer(t)
	b1 := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	b2 := linkDevice(t, srv.URL, b1, "bob-laptop", false)
	events(t, b1)
	ctx := ctxT(t)
	path, data := writeFile(t, "notes.txt", 200<<10+3)
	if _, err := carol.SendFile(ctx, "bob", path, "my notes", nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*Client{b1, b2} {
		var reqs []*RequestEvent
		if err := b.Receive(ctx, 0, func(e Event) {
			if r, ok := e.(*RequestEvent); ok {
				reqs = append(reqs, r)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if len(reqs) != 1 || reqs[0].Attachment == nil || reqs[0].Attachment.Name != "notes.txt" {
			t.Fatalf("request events: %+v", reqs)
		}
	}
	reqs, err := b1.Requests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].Text != "my notes" || reqs[0].Attachment == nil || reqs[0].Attachment.Size != int64(len(data)) {
		t.Fatalf("requests: %+v %v", reqs, err)
	}
	pending, err := b1.Accept(ctx, "carol")
	if err != nil || len(pending) != 1 || pending[0].Attachment == nil {
		t.Fatalf("accept: %+v %v", pending, err)
	}
	var synced []*MessageEvent
	if err := b2.Receive(ctx, 0, func(e Event) {
		if m, ok := e.(*MessageEvent); ok {
			synced = append(synced, m)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0].Attachment == nil || synced[0].Text != "my notes" {
		t.Fatalf("bob's laptop after the acceptance: %+v", synced)
	}
	for _, b := range []*Client{b1, b2} {
		h, err := b.History(ctx, "carol", 0)
		if err != nil || len(h) != 1 || h[0].Attachment == nil {
			t.Fatalf("history: %+v %v", h, err)
		}
		saved, err := b.Download(ctx, h[0].Attachment, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(saved)
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("downloaded file differs (%v)", err)
		}
	}
}
