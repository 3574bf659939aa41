package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// clock is a test clock: the real time plus an offset the test moves.
type clock struct{ offset atomic.Int64 }

func (k *clock) now() time.Time          { return time.Now().Add(time.Duration(k.offset.Load())) }
func (k *clock) advance(d time.Duration) { k.offset.Add(int64(d)) }

// newUserAt registers name in a fresh home running on clock k.
func newUserAt(t *testing.T, url, name string, k *clock) *Client {
	t.Helper()
	c, err := New(Config{Home: t.TempDir(), Now: k.now, Warn: func(err error) { t.Logf("warning for %s: %v", name, err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Register(ctxT(t), url, name); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return c
}

// everyday renders the events of a backlog but receipts as lines: "bob: text",
// "alice -> bob: text", "reaction bob 👍 <id>", "edit alice <id>: text",
// "delete alice <id>", "receipt bob delivered <id>", "typing bob true",
// "timer alice 5s". Ids are shortened to their first 8 hex digits.
func everyday(t *testing.T, c *Client) []string {
	t.Helper()
	var out []string
	for _, l := range everydayAll(t, c) {
		if !strings.HasPrefix(l, "receipt ") {
			out = append(out, l)
		}
	}
	return out
}

// everydayAll is everyday with the receipts.
func everydayAll(t *testing.T, c *Client) []string {
	t.Helper()
	var out []string
	short := func(id MessageID) string { return id.String()[:8] }
	err := c.Receive(ctxT(t), 0, func(e Event) {
		switch e := e.(type) {
		case *MessageEvent:
			s := e.From
			if e.To != "" {
				s += " -> " + e.To
			}
			s += ": " + e.Text
			if e.ReplyTo != nil {
				s += " (re " + short(e.ReplyTo.ID) + " by " + e.ReplyTo.Author + ")"
			}
			out = append(out, s)
		case *ReactionEvent:
			out = append(out, fmt.Sprintf("reaction %s %s %s %v", e.From, e.Emoji, short(e.Target), e.Removed))
		case *EditEvent:
			out = append(out, fmt.Sprintf("edit %s %s: %s", e.From, short(e.Target), e.Text))
		case *DeleteEvent:
			out = append(out, fmt.Sprintf("delete %s %s", e.From, short(e.Target)))
		case *ReceiptEvent:
			for _, id := range e.Targets {
				out = append(out, fmt.Sprintf("receipt %s %s %s", e.From, e.Kind, short(id)))
			}
		case *TypingEvent:
			out = append(out, fmt.Sprintf("typing %s %v", e.From, e.Started))
		case *TimerEvent:
			out = append(out, fmt.Sprintf("timer %s %v", e.From, e.Timer))
		case *DroppedEvent:
			out = append(out, fmt.Sprintf("dropped %s/%d: %v", e.From, e.Device, e.Err))
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return out
}

// fourDevices is alice and bob, contacts, each with a second device, all
// backlogs drained.
func fourDevices(t *testing.T, k *clock) (a1, a2, b1, b2 *Client) {
	t.Helper()
	srv := startServer(t)
	a1 = newUserAt(t, srv.URL, "alice", k)
	b1 = newUserAt(t, srv.URL, "bob", k)
	befriend(t, a1, "alice", b1, "bob")
	a2 = linkDevice(t, srv.URL, a1, "alice-laptop", true)
	b2 = linkDevice(t, srv.URL, b1, "bob-laptop", true)
	a2.cfg.Now, b2.cfg.Now = k.now, k.now
	for range 2 { // receipts of the first round come back in the second
		for _, c := range []*Client{a1, a2, b1, b2} {
			everyday(t, c)
		}
	}
	return a1, a2, b1, b2
}

func entry(t *testing.T, c *Client, conv string, id MessageID) Entry {
	t.Helper()
	h, err := c.History(ctxT(t), conv, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range h {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("no entry %s in %v", id, h)
	return Entry{}
}

func TestEverydayMessagingAcrossDevices(t *testing.T) {
	k := &clock{}
	a1, a2, b1, b2 := fourDevices(t, k)
	ctx := ctxT(t)
	s := func(id MessageID) string { return id.String()[:8] }

	hello := mustSend(t, a1, "bob", "hello")
	want(t, "bob1", everyday(t, b1), "alice: hello")
	want(t, "bob2", everyday(t, b2), "alice: hello")
	// Both of bob's devices stored it and said so; alice's devices both
	// learn it, the sending one and the other, once: bob got it.
	want(t, "alice1", everydayAll(t, a1), "receipt bob delivered "+s(hello))
	want(t, "alice2", everydayAll(t, a2), "alice -> bob: hello", "receipt bob delivered "+s(hello))
	if e := entry(t, a1, "bob", hello); !e.Delivered || e.Read {
		t.Fatalf("alice's entry after delivery: %+v", e)
	}

	// A reply quotes; a reaction reaches every device of both.
	re, err := b2.Reply(ctx, "alice", hello, "hi yourself")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b1.React(ctx, "alice", hello, "👍", false); err != nil {
		t.Fatal(err)
	}
	want(t, "alice1", everyday(t, a1), "bob: hi yourself (re "+s(hello)+" by alice)", "reaction bob 👍 "+s(hello)+" false")
	want(t, "bob1", everydayAll(t, b1), "bob -> alice: hi yourself (re "+s(hello)+" by alice)", "receipt alice delivered "+s(re))
	want(t, "bob2", everydayAll(t, b2), "reaction bob 👍 "+s(hello)+" false", "receipt alice delivered "+s(re))
	everyday(t, a2)
	for i, c := range []*Client{a1, a2} {
		if e := entry(t, c, "bob", hello); e.Reactions["bob"] != "👍" {
			t.Fatalf("alice%d: reactions %v", i+1, e.Reactions)
		}
	}
	if e := entry(t, b1, "alice", hello); e.Reactions["bob"] != "👍" {
		t.Fatalf("bob1: reactions %v", e.Reactions)
	}
	if e := entry(t, a2, "bob", re); e.ReplyTo == nil || e.ReplyTo.ID != hello || e.ReplyTo.Author != "alice" {
		t.Fatalf("the reply's quote on alice2: %+v", e.ReplyTo)
	}

	// The other device of the author edits; nobody else may.
	if _, err := a2.Edit(ctx, "bob", hello, "hello, world"); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Edit(ctx, "alice", hello, "bob's words"); err == nil || !strings.Contains(err.Error(), "only its sender") {
		t.Fatalf("bob edited alice's message: %v", err)
	}
	want(t, "bob1", everyday(t, b1), "edit alice "+s(hello)+": hello, world")
	for i, c := range []*Client{a1, a2, b1, b2} {
		everyday(t, c)
		conv := "bob"
		if i >= 2 {
			conv = "alice"
		}
		if e := entry(t, c, conv, hello); e.Text != "hello, world" || e.Edited.IsZero() {
			t.Fatalf("device %d after the edit: %+v", i, e)
		}
	}

	// Read receipts: bob reads on one device; alice learns it, bob's other
	// device counts it as read.
	// (Two unread: "hello bob" from befriend, and hello.)
	if n, err := b1.MarkRead(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("mark read: %d, %v", n, err)
	}
	if got := everydayAll(t, a1); len(got) != 2 || got[1] != "receipt bob read "+s(hello) {
		t.Fatalf("alice1 got %q, want two read receipts", got)
	}
	everyday(t, b2)
	if e := entry(t, b2, "alice", hello); !e.Read {
		t.Fatalf("bob2 does not know bob read it: %+v", e)
	}
	if n, err := b2.MarkRead(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("bob2 read again: %d, %v", n, err)
	}
	if e := entry(t, a2, "bob", hello); !e.Read {
		everyday(t, a2)
		if e := entry(t, a2, "bob", hello); !e.Read {
			t.Fatalf("alice2 does not know bob read it: %+v", e)
		}
	}

	// Typing is shown, never stored.
	if err := a1.SendTyping(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	want(t, "bob2", everyday(t, b2), "typing alice true")

	// Delete for everyone: a tombstone on every device, reactions gone.
	if _, err := a1.Delete(ctx, "bob", hello); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*Client{a1, a2, b1, b2} {
		everyday(t, c)
		conv := "bob"
		if i >= 2 {
			conv = "alice"
		}
		if e := entry(t, c, conv, hello); !e.Deleted || e.Text != "" || len(e.Reactions) != 0 {
			t.Fatalf("device %d after the delete: %+v", i, e)
		}
	}
	if _, err := a1.Edit(ctx, "bob", hello, "back from the dead"); err == nil {
		t.Fatal("edited a deleted message")
	}
	if _, err := b1.React(ctx, "alice", hello, "too long for one emoji", false); err == nil {
		t.Fatal("a sentence accepted as a reaction")
	}
}

// sendRaw sends content to user as an ordinary message, bypassing every
// local check: what a modified client could send.
func sendRaw(t *testing.T, c *Client, user string, content *wire.Content) {
	t.Helper()
	content.SentMs = c.now().UnixMilli()
	if err := c.sendControl(ctxT(t), user, content); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

func TestOnlyTheSenderMayEditOrDelete(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	befriend(t, alice, "alice", bob, "bob")
	befriend(t, carol, "carol", bob, "bob")
	mine := mustSend(t, bob, "alice", "bob's own words")
	everyday(t, alice)
	theirs := mustSend(t, alice, "bob", "alice's words")
	everyday(t, bob)
	everyday(t, alice)

	// Alice forges edits and deletes of bob's message; carol, who is in
	// another conversation, of alice's message to bob.
	ref := func(id MessageID, author string) *wire.MessageRef {
		return &wire.MessageRef{MessageId: id[:], Author: author}
	}
	sendRaw(t, alice, "bob", &wire.Content{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: ref(mine, "bob"), Body: "forged"}}})
	sendRaw(t, alice, "bob", &wire.Content{Body: &wire.Content_Delete{Delete: &wire.Delete{Target: ref(mine, "bob")}}})
	sendRaw(t, carol, "bob", &wire.Content{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: ref(theirs, "alice"), Body: "forged by carol"}}})
	sendRaw(t, carol, "bob", &wire.Content{Body: &wire.Content_Delete{Delete: &wire.Delete{Target: ref(theirs, "alice")}}})
	want(t, "bob", everyday(t, bob))
	h, err := bob.History(ctxT(t), "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h {
		got = append(got, fmt.Sprintf("%s:%s:%v:%v", e.Author, e.Text, e.Edited.IsZero(), e.Deleted))
	}
	want(t, "bob's history", got, "alice:hello bob:true:false", "bob:bob's own words:true:false", "alice:alice's words:true:false")
	// The real author still can.
	sendRaw(t, alice, "bob", &wire.Content{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: ref(theirs, "alice"), Body: "alice, edited"}}})
	want(t, "bob", everyday(t, bob), "edit alice "+theirs.String()[:8]+": alice, edited")
}

func TestDisappearingMessagesErasedOnEveryDevice(t *testing.T) {
	k := &clock{}
	a1, a2, b1, b2 := fourDevices(t, k)
	ctx := ctxT(t)
	if _, err := a1.SetTimer(ctx, "bob", 4*time.Second); err == nil {
		t.Fatal("a timer under 5 s accepted")
	}
	if _, err := a1.SetTimer(ctx, "bob", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	want(t, "bob2", everyday(t, b2), "timer alice 30s")
	want(t, "alice2", everyday(t, a2), "timer alice 30s")
	for i, c := range []*Client{a1, a2, b1, b2} {
		if i == 2 {
			everyday(t, c)
		}
		conv := "bob"
		if i >= 2 {
			conv = "alice"
		}
		if d, err := c.Timer(ctx, conv); err != nil || d != 30*time.Second {
			t.Fatalf("device %d timer %v, %v", i, d, err)
		}
	}
	const canary = "self-destructing-canary-5f3a"
	id := mustSend(t, b1, "alice", canary)
	keep := "not disappearing"
	for _, c := range []*Client{a1, a2, b2} {
		everyday(t, c)
	}
	everyday(t, b1)
	for i, c := range []*Client{a1, a2, b1, b2} {
		conv := "bob"
		if i >= 2 {
			conv = "alice"
		}
		if e := entry(t, c, conv, id); e.Text != canary || e.Expires.IsZero() {
			t.Fatalf("device %d before expiry: %+v", i, e)
		}
		// The file check below can see the text.
		if !bytes.Contains(dbBytes(t, c), []byte(canary)) {
			t.Fatalf("device %d: the text is not in the database files before expiry", i)
		}
	}
	// Off again for what follows; then the time runs out.
	if _, err := b1.SetTimer(ctx, "alice", 0); err != nil {
		t.Fatal(err)
	}
	kept := mustSend(t, b1, "alice", keep)
	k.advance(31 * time.Second)
	for i, c := range []*Client{a1, a2, b1, b2} {
		everyday(t, c)
		conv := "bob"
		if i >= 2 {
			conv = "alice"
		}
		h, err := c.History(ctx, conv, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h {
			if e.ID == id || strings.Contains(e.Text, canary) {
				t.Fatalf("device %d still shows the expired message: %+v", i, e)
			}
		}
		if e := entry(t, c, conv, kept); e.Text != keep || !e.Expires.IsZero() {
			t.Fatalf("device %d: message sent with the timer off: %+v", i, e)
		}
		// Gone from the database files themselves, not just hidden.
		if bytes.Contains(dbBytes(t, c), []byte(canary)) {
			t.Fatalf("device %d: the expired text is still in the database files", i)
		}
	}
}

// dbBytes is the content of c's database file and its write-ahead log.
func dbBytes(t *testing.T, c *Client) []byte {
	t.Helper()
	var all []byte
	for _, f := range []string{dbFile, dbFile + "-wal"} {
		b, err := os.ReadFile(filepath.Join(c.cfg.Home, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func TestRedeliveryAfterCrashKeepsTheAttachment(t *testing.T) {
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
	knows(t, bob, "alice")
	content := bytes.Repeat([]byte("attached "), 5000)
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendFile(ctxT(t), "bob", path, "see attached", nil); err != nil {
		t.Fatal(err)
	}
	bob.hookBeforeAck = func() error { return errCrash }
	if err := bob.Receive(ctxT(t), 0, func(Event) { t.Fatal("handed over before the crash") }); !errors.Is(err, errCrash) {
		t.Fatalf("crashing receive: %v", err)
	}
	bob.Close()
	if bob, err = Open(bobHome); err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got, _ := collect(t, bob, 0)
	if len(got) != 1 || got[0].Attachment == nil || got[0].Text != "see attached" {
		t.Fatalf("after the restart: %+v", got)
	}
	dir := t.TempDir()
	saved, err := bob.Download(ctxT(t), got[0].Attachment, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(saved)
	if err != nil || sha256.Sum256(b) != sha256.Sum256(content) {
		t.Fatalf("downloaded file differs (%v)", err)
	}
	if h, err := bob.History(ctxT(t), "alice", 0); err != nil || len(h) != 1 || h[0].Attachment == nil || h[0].Attachment.Name != "notes.txt" {
		t.Fatalf("history %+v, %v", h, err)
	}
}

// FuzzReceiveContent feeds arbitrary decrypted contents (what a peer
// controls) through the receive dispatcher, as the receiving
// transaction does, against a conversation with some history: it never
// panics, and a content it refuses leaves the database as it was.
func FuzzReceiveContent(f *testing.F) {
	c, err := New(Config{Home: f.TempDir(), Warn: func(error) {}})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	a := &account{Username: "me", DeviceID: 1}
	now := time.UnixMilli(1_700_000_000_000)
	ids := []MessageID{{1}, {2}, {3}}
	for i, out := range []int{0, 1, 0} {
		if _, err := c.db.Exec(`INSERT INTO history (peer, outgoing, message_id, device, sent_ms, received_ms, body, state) VALUES ('bob', ?, ?, 1, 1, 1, ?, 1)`,
			out, ids[i][:], fmt.Sprint("message ", i)); err != nil {
			f.Fatal(err)
		}
	}
	ref := func(id MessageID, author string) *wire.MessageRef {
		return &wire.MessageRef{MessageId: id[:], Author: author}
	}
	seeds := []*wire.Content{
		{Body: &wire.Content_Text{Text: &wire.Text{Body: "hi"}}, ReplyTo: ref(ids[1], "me"), ExpireSeconds: 60},
		{Body: &wire.Content_Reaction{Reaction: &wire.Reaction{Target: ref(ids[0], "bob"), Emoji: "🎉"}}},
		{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: ref(ids[0], "bob"), Body: "edited"}}},
		{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: ref(ids[1], "me"), Body: "not yours"}}},
		{Body: &wire.Content_Delete{Delete: &wire.Delete{Target: ref(ids[2], "bob")}}},
		{Body: &wire.Content_Receipt{Receipt: &wire.Receipt{Kind: wire.Receipt_READ, Targets: []*wire.MessageRef{ref(ids[1], "me"), ref(ids[0], "")}}}},
		{Body: &wire.Content_Typing{Typing: &wire.Typing{Started: true}}},
		{Body: &wire.Content_Timer{Timer: &wire.TimerUpdate{Seconds: 3600}}},
		{Body: &wire.Content_Timer{Timer: &wire.TimerUpdate{Seconds: 1}}},
		{Body: &wire.Content_Text{Text: &wire.Text{Body: "in a group"}}, Group: &wire.GroupContext{GroupId: make([]byte, 16), MessageId: make([]byte, 16)}},
		{Body: &wire.Content_Text{Text: &wire.Text{Body: "file"}}, Attachment: &wire.Attachment{BlobId: "00", Key: []byte{1}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	snapshot := func() string {
		var sb strings.Builder
		for _, q := range []string{
			`SELECT seq, peer, outgoing, hex(message_id), body, coalesce(author, ''), hex(coalesce(attachment, x'')), hex(coalesce(reply_to, x'')), edited_ms, deleted, expires_ms, delivered_ms, read_ms FROM history ORDER BY seq`,
			`SELECT peer, hex(message_id), reactor, emoji, updated_ms FROM reactions ORDER BY 1, 2, 3`,
			`SELECT peer, hex(message_id), reader, kind, at_ms FROM receipts ORDER BY 1, 2, 3, 4`,
			`SELECT peer, seconds, updated_ms FROM timers ORDER BY 1`,
			`SELECT message_id, recipient, hex(content) FROM outbox ORDER BY seq`,
		} {
			rs, err := c.db.Query(q)
			if err != nil {
				f.Fatal(err)
			}
			cols, _ := rs.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rs.Next() {
				if err := rs.Scan(ptrs...); err != nil {
					f.Fatal(err)
				}
				fmt.Fprintln(&sb, vals...)
			}
			rs.Close()
		}
		return sb.String()
	}
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		before := snapshot()
		var q receiptQueue
		var evs []Event
		var refused error
		// As process does: a refused content is rolled back to its
		// savepoint and the batch commits.
		err := inTx(ctx, c.db, func(tx *sql.Tx) error {
			refused = savepoint(ctx, tx, func() (err error) {
				evs, _, err = c.receiveContent(ctx, tx, a, deviceKey{"bob", 1}, MessageID{9}, plaintext, now, &q)
				return err
			})
			var le *localError
			if errors.As(refused, &le) {
				return refused
			}
			_, err := q.queue(ctx, tx, now)
			return err
		})
		if err != nil {
			t.Fatalf("a peer's content failed the database: %v", err)
		}
		if refused != nil {
			if after := snapshot(); after != before {
				t.Fatalf("refused content (%v) changed the database:\n%s\nthen\n%s", refused, before, after)
			}
			if len(evs) != 0 {
				t.Fatalf("refused content produced events %v", evs)
			}
			return
		}
		// Accepted: put things back for the next input.
		for _, q := range []string{`DELETE FROM history WHERE seq > 3`, `DELETE FROM reactions`, `DELETE FROM receipts`, `DELETE FROM timers`, `DELETE FROM outbox`,
			`UPDATE history SET body = 'message ' || (seq - 1), edited_ms = 0, deleted = 0, delivered_ms = 0, read_ms = 0, attachment = NULL, reply_to = NULL`} {
			if _, err := c.db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestEverydayMessagingInAGroup(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	alice2 := linkDevice(t, srv.URL, alice, "alice-laptop", false)
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	ctx := ctxT(t)
	id, err := alice.CreateGroup(ctx, "Book club", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	conv := GroupConversation(id)
	for _, c := range []*Client{alice2, bob, carol} {
		everyday(t, c)
	}
	s := func(id MessageID) string { return id.String()[:8] }

	hello, err := alice.Send(ctx, conv, "hello club")
	if err != nil {
		t.Fatal(err)
	}
	// Group events carry the group; delivery receipts go to the author.
	var named []string
	if err := bob.Receive(ctx, 0, func(e Event) {
		if m, ok := e.(*MessageEvent); ok {
			named = append(named, fmt.Sprintf("%s %x %s: %s", m.GroupName, m.Group, m.From, m.Text))
		}
	}); err != nil {
		t.Fatal(err)
	}
	want(t, "bob", named, fmt.Sprintf("Book club %x alice: hello club", id[:]))
	want(t, "carol", everyday(t, carol), "alice: hello club")
	want(t, "alice", everydayAll(t, alice), "receipt bob delivered "+s(hello), "receipt carol delivered "+s(hello))
	want(t, "bob", everydayAll(t, bob))

	// Carol reacts: every member and alice's other device see it.
	if _, err := carol.React(ctx, conv, hello, "📚", false); err != nil {
		t.Fatal(err)
	}
	want(t, "bob", everyday(t, bob), "reaction carol 📚 "+s(hello)+" false")
	want(t, "alice2", everyday(t, alice2), "alice: hello club", "reaction carol 📚 "+s(hello)+" false")

	// Bob may not edit alice's message, not even with a forged content.
	if _, err := bob.Edit(ctx, conv, hello, "bob was here"); err == nil {
		t.Fatal("bob edited alice's group message")
	}
	forged := newMessageID()
	var epoch uint64
	if g := mustGroup(t, bob, id); g.Epoch > 0 {
		epoch = g.Epoch
	}
	for _, to := range []string{"alice", "carol"} {
		sendRaw(t, bob, to, &wire.Content{
			Body:  &wire.Content_Edit{Edit: &wire.Edit{Target: &wire.MessageRef{MessageId: hello[:], Author: "alice"}, Body: "forged"}},
			Group: &wire.GroupContext{GroupId: id[:], Epoch: epoch, MessageId: forged[:]},
		})
	}
	everyday(t, carol)
	if e := entry(t, carol, conv, hello); e.Text != "hello club" || !e.Edited.IsZero() || e.Author != "alice" {
		t.Fatalf("carol's entry after a forged edit: %+v", e)
	}

	// The author edits, then deletes, on every device.
	if _, err := alice2.Edit(ctx, conv, hello, "hello, club"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{alice, bob, carol} {
		everyday(t, c)
		if e := entry(t, c, conv, hello); e.Text != "hello, club" {
			t.Fatalf("after the edit: %+v", e)
		}
	}
	// Read receipts reach every member, who learn who read what.
	if n, err := bob.MarkRead(ctx, conv); err != nil || n != 1 {
		t.Fatalf("bob read: %d, %v", n, err)
	}
	want(t, "alice", everydayAll(t, alice), "receipt bob read "+s(hello))
	everyday(t, carol) // a receipt for messages that are not carol's: nothing
	if e := entry(t, alice2, conv, hello); e.Read {
		t.Fatalf("alice2 knew of the read before receiving: %+v", e)
	}
	everyday(t, alice2)
	if e := entry(t, alice2, conv, hello); !e.Read || !e.Delivered {
		t.Fatalf("alice2 after bob read: %+v", e)
	}
	if _, err := alice.Delete(ctx, conv, hello); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{alice2, bob, carol} {
		everyday(t, c)
		if e := entry(t, c, conv, hello); !e.Deleted || e.Text != "" || len(e.Reactions) != 0 {
			t.Fatalf("after the delete: %+v", e)
		}
	}
	// A timer for the group.
	if _, err := carol.SetTimer(ctx, conv, time.Hour); err != nil {
		t.Fatal(err)
	}
	want(t, "alice", everyday(t, alice), "timer carol 1h0m0s")
	if d, err := bob.Timer(ctx, conv); err != nil || d != 0 {
		t.Fatalf("bob's timer before receiving: %v, %v", d, err)
	}
	everyday(t, bob)
	if d, err := bob.Timer(ctx, conv); err != nil || d != time.Hour {
		t.Fatalf("bob's timer: %v, %v", d, err)
	}
}

func TestLinkingLeavesDisappearingAndGroupMessagesBehind(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice, "alice", bob, "bob")
	ctx := ctxT(t)
	id, err := alice.CreateGroup(ctx, "Club", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	everyday(t, bob)
	if _, err := bob.Send(ctx, GroupConversation(id), "in the group"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SetTimer(ctx, "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	mustSend(t, bob, "alice", "disappearing")
	if _, err := bob.SetTimer(ctx, "alice", 0); err != nil {
		t.Fatal(err)
	}
	mustSend(t, bob, "alice", "staying")
	everyday(t, alice)
	laptop := linkDevice(t, srv.URL, alice, "laptop", true)
	h, err := laptop.History(ctx, "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h {
		got = append(got, e.Text)
	}
	want(t, "the linked device's history", got, "hello bob", "staying")
}

// A removal takes back only an older reaction: bob's laptop, its clock
// behind, takes back his 👍 after his phone replaced it with ❤️, and the
// removal arrives last; the ❤️ stands on every device.
func TestReactionRemovalRespectsOrder(t *testing.T) {
	k := &clock{}
	a1, a2, b1, b2 := fourDevices(t, k)
	ctx := ctxT(t)
	m := mustSend(t, a1, "bob", "react to this")
	for _, c := range []*Client{a2, b1, b2} {
		everyday(t, c)
	}
	if _, err := b1.React(ctx, "alice", m, "👍", false); err != nil {
		t.Fatal(err)
	}
	everyday(t, b2)
	k.advance(2 * time.Minute)
	if _, err := b1.React(ctx, "alice", m, "❤️", false); err != nil {
		t.Fatal(err)
	}
	b2.cfg.Now = func() time.Time { return k.now().Add(-time.Minute) }
	if _, err := b2.React(ctx, "alice", m, "", true); err != nil {
		t.Fatal(err)
	}
	for c, conv := range map[*Client]string{a1: "bob", a2: "bob", b1: "alice", b2: "alice"} {
		everyday(t, c)
		if got := entry(t, c, conv, m).Reactions["bob"]; got != "❤️" {
			t.Errorf("%s: bob's reaction is %q, want ❤️", c.cfg.Home, got)
		}
	}
}
