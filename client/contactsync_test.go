package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// serverBlocked returns the blocked list the server holds for user.
func serverBlocked(t *testing.T, db *sql.DB, user string) []string {
	t.Helper()
	rs, err := db.Query(`SELECT blocked FROM blocked WHERE username = ? ORDER BY blocked`, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var b string
		if err := rs.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func blockedOn(t *testing.T, c *Client, user string) bool {
	t.Helper()
	k, err := c.ContactInfo(ctxT(t), user)
	if err != nil {
		t.Fatal(err)
	}
	return k.Blocked
}

func TestBlockOnOneDeviceBlocksOnAll(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	laptop := linkDevice(t, srv.URL, bob, "bob laptop", false)
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	want(t, "bob's laptop", events(t, laptop), "request alice", "alice: hi bob")
	mustSend(t, carol, "bob", "hi, I'm carol")
	want(t, "bob", events(t, bob), "request carol")
	want(t, "bob's laptop", events(t, laptop), "request carol")

	if err := bob.Block(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	// alice holds bob's delivery token: her message and her call are
	// sealed, so the server cannot refuse them and each device must.
	mustSend(t, alice, "bob", "sealed while blocked")
	if err := alice.SendCall(ctx, "bob", offer(5)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name string
		c    *Client
	}{{"bob", bob}, {"bob's laptop", laptop}} {
		if got, other := calls(t, d.c); len(got)+len(other) != 0 {
			t.Fatalf("%s: a blocked sender got through: %v %v", d.name, got, other)
		}
		if !blockedOn(t, d.c, "alice") || !blockedOn(t, d.c, "carol") {
			t.Fatalf("%s does not show alice and carol blocked", d.name)
		}
		if reqs, err := d.c.Requests(ctx); err != nil || len(reqs) != 0 {
			t.Fatalf("%s keeps the requests of a blocked sender: %v %v", d.name, reqs, err)
		}
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, serverDB(t, srv), "bob"), "alice", "carol")

	// Unblocking travels the same way.
	if err := bob.Unblock(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	want(t, "bob's laptop", events(t, laptop))
	if blockedOn(t, laptop, "alice") || !blockedOn(t, laptop, "carol") {
		t.Fatal("the unblock did not reach bob's laptop")
	}
	mustSend(t, alice, "bob", "after unblock")
	want(t, "bob", events(t, bob), "alice: after unblock")
	want(t, "bob's laptop", events(t, laptop), "alice: after unblock")
	want(t, "the server's blocked list of bob", serverBlocked(t, serverDB(t, srv), "bob"), "carol")
}

// TestBlockedListOnTheServerIsNotClobbered: the server keeps one list per
// account, replaced by whichever device sends it. A device that sends its
// list before it learned of another device's block must send it again
// once it has.
func TestBlockedListOnTheServerIsNotClobbered(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	newUser(t, srv.URL, "alice")
	newUser(t, srv.URL, "carol")
	laptop := linkDevice(t, srv.URL, bob, "bob laptop", false)
	ctx := ctxT(t)
	db := serverDB(t, srv)

	if err := bob.Block(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, db, "bob"), "alice")
	// The laptop has not received the block yet: its list lacks alice.
	if err := laptop.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, db, "bob"), "carol")
	want(t, "bob's laptop", events(t, laptop))
	want(t, "the server's blocked list of bob", serverBlocked(t, db, "bob"), "alice", "carol")
	want(t, "bob", events(t, bob))
	for _, c := range []*Client{bob, laptop} {
		if !blockedOn(t, c, "alice") || !blockedOn(t, c, "carol") {
			t.Fatal("the devices' lists differ")
		}
	}
	// Reconnecting sends nothing stale.
	for _, c := range []*Client{laptop, bob} {
		reconnect(c)
		want(t, "a reconnected device", events(t, c))
		want(t, "the server's blocked list of bob", serverBlocked(t, db, "bob"), "alice", "carol")
	}
}

func TestContactSyncOnlyFromOwnDevices(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	laptop := linkDevice(t, srv.URL, bob, "bob laptop", false)
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	want(t, "bob's laptop", events(t, laptop), "request alice", "alice: hi bob")
	if err := bob.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	want(t, "bob's laptop", events(t, laptop))

	// Another account cannot block or unblock for bob.
	sendRaw(t, alice, "bob", &wire.Content{Body: &wire.Content_ContactSync{ContactSync: &wire.ContactSync{Username: "dave", Blocked: true}}})
	sendRaw(t, alice, "bob", &wire.Content{Body: &wire.Content_ContactSync{ContactSync: &wire.ContactSync{Username: "carol"}}})
	for _, c := range []*Client{bob, laptop} {
		got := events(t, c)
		if len(got) != 2 || !strings.Contains(got[0], "dropped alice/1") || !strings.Contains(got[0], "not this account") {
			t.Fatalf("got %q, want both contact syncs from alice dropped", got)
		}
		if blockedOn(t, c, "dave") || !blockedOn(t, c, "carol") {
			t.Fatal("alice changed whom bob blocks")
		}
	}

	// An own device's malformed one is dropped too, changing nothing.
	for _, u := range []string{"Carol", "bob", "", "carol\x00"} {
		sendRaw(t, bob, "bob", &wire.Content{Body: &wire.Content_ContactSync{ContactSync: &wire.ContactSync{Username: u}}})
	}
	got := events(t, laptop)
	if len(got) != 4 || !strings.Contains(got[3], "contact sync for") {
		t.Fatalf("got %q, want four malformed contact syncs dropped", got)
	}
	if !blockedOn(t, laptop, "carol") {
		t.Fatal("a malformed contact sync unblocked carol")
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, serverDB(t, srv), "bob"), "carol")
}

// TestLinkedDeviceGetsNameOnlyBlocks: an account blocked by name, whose
// keys were never fetched, is no contact in the link payload and must
// still reach the new device; else its first block would send the
// server a list without it.
func TestLinkedDeviceGetsNameOnlyBlocks(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	newUser(t, srv.URL, "dave")
	ctx := ctxT(t)
	if err := bob.Block(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	laptop := linkDevice(t, srv.URL, bob, "bob laptop", false)
	if !blockedOn(t, laptop, "carol") {
		t.Fatal("the linked device does not know carol is blocked")
	}
	if err := laptop.Block(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, serverDB(t, srv), "bob"), "carol", "dave")
}

// FuzzScreenContactSync feeds arbitrary contents, as an own device or a
// peer would send them, to the contact screening inside a real (rolled
// back) transaction: no panic, a refused one changes nothing, and only an
// own device changes whom the account blocks.
func FuzzScreenContactSync(f *testing.F) {
	for _, cs := range []*wire.ContactSync{{Username: "carol"}, {Username: "dave", Blocked: true}, {Username: "alice"}, {Username: "Dave"}, {}} {
		b, _ := proto.Marshal(&wire.Content{SentMs: 1, Body: &wire.Content_ContactSync{ContactSync: cs}})
		f.Add(true, b)
		f.Add(false, b)
	}
	db, err := openDB(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.UnixMilli(5)
	for _, q := range []string{
		`INSERT INTO contacts (username, state, blocked, updated_ms) VALUES ('carol', 2, 1, 1), ('dave', 1, 0, 1), ('erin', 2, 0, 1)`,
		`INSERT INTO requests (peer, message_id, device, sent_ms, received_ms, body) VALUES ('dave', x'00', 1, 1, 1, 'hi')`,
		`INSERT INTO sealed_state (id, token, blocked_synced) VALUES (1, zeroblob(32), 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			f.Fatal(err)
		}
	}
	c := &Client{db: db}
	a := &account{Username: "alice", DeviceID: 1}
	snapshot := func(t testing.TB, tx *sql.Tx) string {
		var sb strings.Builder
		for _, q := range []string{
			`SELECT username, state, blocked FROM contacts ORDER BY username`,
			`SELECT peer FROM requests ORDER BY seq`,
			`SELECT blocked_synced FROM sealed_state`,
		} {
			rs, err := tx.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rs.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rs.Next() {
				if err := rs.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(&sb, vals...)
			}
			rs.Close()
		}
		return sb.String()
	}
	f.Fuzz(func(t *testing.T, own bool, b []byte) {
		k := deviceKey{"erin", 1}
		if own {
			k = deviceKey{"alice", 2}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		before, _ := blockedList(ctx, tx)
		snap := snapshot(t, tx)
		sc, err := c.screenIncoming(ctx, tx, a, k, MessageID{}, now, b)
		var le *localError
		if errors.As(err, &le) {
			t.Fatalf("the database failed: %v", err)
		}
		if err != nil {
			if after := snapshot(t, tx); after != snap {
				t.Fatalf("refused content (%v) changed the database:\n%s\nthen\n%s", err, snap, after)
			}
			if len(sc.events) != 0 {
				t.Fatalf("refused content produced events %v", sc.events)
			}
			return
		}
		var ct wire.Content
		isSync := proto.Unmarshal(b, &ct) == nil && ct.GetContactSync() != nil
		after, _ := blockedList(ctx, tx)
		if fmt.Sprint(before) != fmt.Sprint(after) && !(own && isSync) {
			t.Fatalf("blocked list changed from %v to %v by something other than an own contact sync", before, after)
		}
		if own && isSync && txBlocked(t, tx, ct.GetContactSync().GetUsername()) != ct.GetContactSync().GetBlocked() {
			t.Fatal("an accepted contact sync was not applied")
		}
	})
}

func txBlocked(t *testing.T, tx *sql.Tx, user string) bool {
	t.Helper()
	r, err := loadContact(context.Background(), tx, user)
	if err != nil {
		t.Fatal(err)
	}
	return r.blocked == 1
}

// TestBlockWhileOfflineReachesOtherDevicesLater: the ContactSync is
// queued with the block, so a block made with the server down reaches the
// other devices once it is back.
func TestBlockWhileOfflineReachesOtherDevicesLater(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	newUser(t, srv.URL, "carol")
	laptop := linkDevice(t, srv.URL, bob, "bob laptop", false)
	srv.stop()
	if err := bob.Block(ctxT(t), "carol"); err != nil {
		t.Fatal(err)
	}
	srv.start()
	want(t, "bob", events(t, bob)) // connects, sends the list and the outbox
	want(t, "bob's laptop", events(t, laptop))
	if !blockedOn(t, laptop, "carol") {
		t.Fatal("a block made offline never reached bob's laptop")
	}
	want(t, "the server's blocked list of bob", serverBlocked(t, serverDB(t, srv), "bob"), "carol")
}

// BenchmarkBlockReachesOtherDevice measures a block (then an unblock) on
// the primary until bob's laptop has applied it: the local change, the
// server's list, the ContactSync's delivery, and the laptop sending the
// list again at the end of its batch.
func BenchmarkBlockReachesOtherDevice(b *testing.B) {
	srv := startServer(b)
	bob := newUser(b, srv.URL, "bob")
	laptop := linkDevice(b, srv.URL, bob, "bob laptop", false)
	ctx := ctxT(b)
	block := true
	for b.Loop() {
		if err := bob.setBlocked(ctx, "carol", block); err != nil {
			b.Fatal(err)
		}
		if err := laptop.Receive(ctx, 0, func(Event) {}); err != nil {
			b.Fatal(err)
		}
		if k, err := laptop.ContactInfo(ctx, "carol"); err != nil || k.Blocked != block {
			b.Fatalf("the laptop shows %+v (%v)", k, err)
		}
		block = !block
	}
}

// BenchmarkSyncBlockedUnchanged measures what every received batch now
// costs when no ContactSync came: the check that the server has the list.
func BenchmarkSyncBlockedUnchanged(b *testing.B) {
	db, err := openDB(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO sealed_state (id, token, blocked_synced) VALUES (1, zeroblob(32), 1)`); err != nil {
		b.Fatal(err)
	}
	c := &Client{db: db}
	for b.Loop() {
		if err := c.syncBlocked(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
}
