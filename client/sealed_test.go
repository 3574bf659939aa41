package client

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/sealed"
	"github.com/hush-chat/hush/wire"
)

// serverDB opens the test server's SQLite database read-only, to check
// what the server stored.
func serverDB(t testing.TB, srv *testServer) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(srv.dir, "hush.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rowsHolding returns every row of every table of db that holds needle in
// one of its columns, each rendered as its columns' values.
func rowsHolding(t testing.TB, db *sql.DB, needle []byte) []string {
	t.Helper()
	var tables []string
	rs, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var n string
		rs.Scan(&n)
		tables = append(tables, n)
	}
	rs.Close()
	var out []string
	for _, tb := range tables {
		rows, err := db.Query(`SELECT * FROM "` + tb + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var row strings.Builder
			hit := false
			for i, v := range vals {
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				default:
					b = fmt.Append(nil, v)
				}
				hit = hit || bytes.Contains(b, needle)
				fmt.Fprintf(&row, "%s=%q ", cols[i], b)
			}
			if hit {
				out = append(out, tb+": "+row.String())
			}
		}
		rows.Close()
	}
	return out
}

// sealedPair makes alice and bob contacts the way people do (alice writes
// first, bob accepts) and exchanges messages until each knows the other's
// delivery token, so everything after is sealed.
func sealedPair(t *testing.T, alice, bob *Client) {
	t.Helper()
	mustSend(t, alice, "bob", "hi bob")
	if got := events(t, bob); !slices.Equal(got, []string{"request alice"}) {
		t.Fatalf("bob got %q, want a request", got)
	}
	pending, err := bob.Accept(ctxT(t), "alice")
	if err != nil || len(pending) != 1 || pending[0].Text != "hi bob" {
		t.Fatalf("accept: %v %v", pending, err)
	}
	if got := events(t, alice); len(got) != 0 { // the token, nothing to show
		t.Fatalf("alice got %q", got)
	}
	for _, c := range []struct {
		c    *Client
		peer string
	}{{alice, "bob"}, {bob, "alice"}} {
		k, err := c.c.ContactInfo(ctxT(t), c.peer)
		if err != nil || !k.Sealed || k.State != Accepted {
			t.Fatalf("contact %s: %+v %v", c.peer, k, err)
		}
	}
}

func TestSealedExchangeHidesTheSenderFromTheServer(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	sealedPair(t, alice, bob)
	db := serverDB(t, srv)

	// The server has each account's token hash, never the token.
	for _, c := range []*Client{alice, bob} {
		token, _ := c.ownDeliveryToken(ctxT(t))
		a, _ := c.account()
		var hash []byte
		if err := db.QueryRow(`SELECT delivery_token_hash FROM accounts WHERE username = ?`, a.Username).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(token); !bytes.Equal(hash, sum[:]) {
			t.Fatalf("%s: server has %x, want SHA-256 of the token", a.Username, hash)
		}
		if len(rowsHolding(t, db, token)) != 0 {
			t.Fatalf("the server stored %s's delivery token itself", a.Username)
		}
	}
	// Certificates are fetched and cached by the first sealed sends.
	mustSend(t, alice, "bob", "warm up")
	mustSend(t, bob, "alice", "warm up")
	want(t, "bob", events(t, bob), "alice: warm up")
	want(t, "alice", events(t, alice), "bob: warm up")

	for _, dir := range []struct {
		from, to   *Client
		name, peer string
	}{{alice, bob, "alice", "bob"}, {bob, alice, "bob", "alice"}} {
		settle(t, srv, dir.from, dir.name, dir.peer)
		before := len(srv.logs.String())
		id := mustSend(t, dir.from, dir.peer, "sealed from "+dir.name)
		logged := srv.logs.String()[before:]
		if !strings.Contains(logged, "sealed send stored") || !strings.Contains(logged, "recipient="+dir.peer) {
			t.Fatalf("%s's message was not a sealed send; the server logged:\n%s", dir.name, logged)
		}
		for _, l := range strings.Split(logged, "\n") {
			if strings.Contains(l, dir.name) {
				t.Fatalf("the server logged %s's name during a sealed send: %s", dir.name, l)
			}
		}
		rows := rowsHolding(t, db, id[:])
		if len(rows) != 1 {
			t.Fatalf("%d server rows hold the message id, want 1: %q", len(rows), rows)
		}
		if !strings.Contains(rows[0], `sender="" sender_device="0"`) || strings.Contains(rows[0], dir.name) {
			t.Fatalf("the stored sealed message names its sender: %s", rows[0])
		}
		want(t, dir.peer, events(t, dir.to), dir.name+": sealed from "+dir.name)
	}
}

// settle waits until the server has logged everything c's connection
// asked so far (acknowledgements are not answered): the server handles a
// connection's requests in order, so once a request sent now is logged,
// so is everything before it.
func settle(t *testing.T, srv *testServer, c *Client, name, peer string) {
	t.Helper()
	marker := "user=" + name + " device=1 type=get_account"
	n := strings.Count(srv.logs.String(), marker)
	if err := c.CheckUser(ctxT(t), peer); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		if strings.Count(srv.logs.String(), marker) > n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the server never logged %q", marker)
}

// reconnect drops c's connection, so the next Receive gets a new one
// (and the server sends the backlog and queue_empty again).
func reconnect(c *Client) {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil {
		cur.close()
	}
}

func TestSealedEnvelopeReplayShownOnce(t *testing.T) {
	srv := startServer(t)
	m := newMITM(t, srv.URL)
	alice := newUser(t, m.URL, "alice")
	bob := newUser(t, m.URL, "bob")
	sealedPair(t, alice, bob)
	mustSend(t, alice, "bob", "once")
	// The hostile server sends each sealed envelope three times: as it
	// is, and again under a new server id and message id.
	m.set(func(f *wire.ServerFrame) [][]byte {
		e := f.GetEnvelope()
		if e == nil || !e.GetSealed() {
			return raw(f)
		}
		again := &wire.ServerFrame{Body: &wire.ServerFrame_Envelope{Envelope: &wire.Envelope{
			ServerId: e.ServerId + 1000, MessageId: bytes.Repeat([]byte{7}, 16), Sealed: true, Content: e.Content,
		}}}
		return raw(f, f, again)
	})
	got := events(t, bob)
	if len(got) != 2 || got[0] != "alice: once" || !strings.HasPrefix(got[1], "dropped alice/1") {
		t.Fatalf("bob got %q, want the message once and the renamed replay dropped", got)
	}
	m.set(nil)
	mustSend(t, alice, "bob", "still fine")
	want(t, "bob", events(t, bob), "alice: still fine")
}

func TestForgedOrExpiredSenderCertificateRejected(t *testing.T) {
	srv := startServer(t)
	m := newMITM(t, srv.URL)
	alice := newUser(t, m.URL, "alice")
	bob := newUser(t, m.URL, "bob")
	sealedPair(t, alice, bob)
	aa, _ := alice.account()
	ba, _ := bob.account()
	keyFile, err := os.ReadFile(filepath.Join(srv.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	serverKey, err := keys.ParseServerPrivate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := keys.GenerateServer()
	mallory, _ := keys.GenerateIdentity()
	now := time.Now()
	certs := []struct {
		name string
		cert func() (*sealed.Certificate, error)
		want error
	}{
		{"signed by another key", func() (*sealed.Certificate, error) {
			return sealed.IssueCertificate(otherKey, "alice", 1, aa.Identity.Public(), aa.Signing.Public(), now.Add(time.Hour))
		}, sealed.ErrBadCertificate},
		{"expired", func() (*sealed.Certificate, error) {
			return sealed.IssueCertificate(serverKey, "alice", 1, aa.Identity.Public(), aa.Signing.Public(), now.Add(-time.Minute))
		}, sealed.ErrExpiredCertificate},
		{"keys not in alice's list", func() (*sealed.Certificate, error) {
			return sealed.IssueCertificate(serverKey, "alice", 1, mallory.Public(), aa.Signing.Public(), now.Add(time.Hour))
		}, sealed.ErrSenderMismatch},
	}
	var inject []*wire.ServerFrame
	for i, c := range certs {
		cert, err := c.cert()
		if err != nil {
			t.Fatal(err)
		}
		env, err := sealed.Seal(ba.Identity.Public(), cert, bytes.Repeat([]byte{1}, 200))
		if err != nil {
			t.Fatal(err)
		}
		inject = append(inject, &wire.ServerFrame{Body: &wire.ServerFrame_Envelope{Envelope: &wire.Envelope{
			ServerId: uint64(1<<40 + i), MessageId: bytes.Repeat([]byte{byte(i + 1)}, 16), Sealed: true, Content: env,
		}}})
	}
	m.set(func(f *wire.ServerFrame) [][]byte {
		if f.GetQueueEmpty() != nil {
			return raw(append(inject, f)...)
		}
		return raw(f)
	})
	reconnect(bob)
	var drops []*DroppedEvent
	err = bob.Receive(ctxT(t), 0, func(e Event) {
		switch e := e.(type) {
		case *DroppedEvent:
			drops = append(drops, e)
		default:
			t.Errorf("bob got %#v from a forged envelope", e)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(drops) != len(certs) {
		t.Fatalf("%d drops, want %d: %v", len(drops), len(certs), drops)
	}
	for i, d := range drops {
		if !errors.Is(d.Err, certs[i].want) {
			t.Errorf("%s: dropped with %v, want %v", certs[i].name, d.Err, certs[i].want)
		}
	}
	m.set(nil)

	// A genuine sealed message whose certificate expired by the time it
	// is read (bob's clock is a day ahead) is refused too.
	mustSend(t, alice, "bob", "read too late")
	bob.cfg.Now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	reconnect(bob) // the message is in the backlog, not racing a push
	got := events(t, bob)
	if len(got) != 1 || !strings.Contains(got[0], "expired") {
		t.Fatalf("bob got %q, want an expired certificate dropped", got)
	}
	bob.cfg.Now = time.Now
	mustSend(t, alice, "bob", "in time")
	want(t, "bob", events(t, bob), "alice: in time")
}

func TestSenderRefusesACertificateForAnotherDevice(t *testing.T) {
	srv := startServer(t)
	m := newMITM(t, srv.URL)
	alice := newUser(t, m.URL, "alice")
	bob := newUser(t, m.URL, "bob")
	sealedPair(t, alice, bob)
	alice.db.Exec(`UPDATE sealed_state SET certificate = NULL`)
	forged, _ := keys.GenerateServer()
	aa, _ := alice.account()
	m.set(func(f *wire.ServerFrame) [][]byte {
		if f.GetSenderCertificate() != nil {
			c, _ := sealed.IssueCertificate(forged, "alice", 1, aa.Identity.Public(), aa.Signing.Public(), time.Now().Add(time.Hour))
			f.GetSenderCertificate().Certificate, _ = c.Marshal()
		}
		return raw(f)
	})
	if _, err := alice.Send(ctxT(t), "bob", "with a forged certificate"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("send: %v", err)
	}
}

func TestStaleDeliveryTokenFallsBackToAuthenticated(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	sealedPair(t, alice, bob)
	// alice holds a token bob no longer has.
	if _, err := alice.db.Exec(`UPDATE contacts SET delivery_token = ? WHERE username = 'bob'`, bytes.Repeat([]byte{9}, 32)); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "unsealed this time")
	want(t, "bob", events(t, bob), "alice: unsealed this time")
	if k, _ := alice.ContactInfo(ctxT(t), "bob"); k.Sealed {
		t.Fatal("the refused token was kept")
	}
	// bob's next message carries his token again.
	mustSend(t, bob, "alice", "here it is")
	want(t, "alice", events(t, alice), "bob: here it is")
	if k, _ := alice.ContactInfo(ctxT(t), "bob"); !k.Sealed {
		t.Fatal("the token was not learned again")
	}
}

func TestSyncCopiesToOwnDevicesAreSealed(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	laptop := linkDevice(t, srv.URL, alice, "laptop", false)
	sealedPair(t, alice, bob)
	events(t, laptop)
	db := serverDB(t, srv)
	mustSend(t, alice, "bob", "from the phone")
	// Both the message and its copy for the laptop were sealed.
	rs, err := db.Query(`SELECT username, device_id, sender, sender_device FROM messages ORDER BY username`)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for rs.Next() {
		var to, from string
		var dev, fromDev int
		rs.Scan(&to, &dev, &from, &fromDev)
		rows = append(rows, fmt.Sprintf("%s/%d<%q/%d", to, dev, from, fromDev))
	}
	rs.Close()
	want(t, "the server's queue", rows, `alice/2<""/0`, `bob/1<""/0`)
	want(t, "laptop", events(t, laptop), "alice -> bob: from the phone")
	want(t, "bob", events(t, bob), "alice: from the phone")
}
