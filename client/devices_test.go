package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// linkDevice links a fresh home to primary's account as name and
// returns it, running the new device's Link and the primary's
// ApproveLink as two parties would.
func linkDevice(t testing.TB, url string, primary *Client, name string, history bool) *Client {
	t.Helper()
	c := newHome(t, name)
	codes := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := c.Link(ctxT(t), url, name, func(code string) error { codes <- code; return nil })
		done <- err
	}()
	var code string
	select {
	case code = <-codes:
	case err := <-done:
		t.Fatalf("link %s: %v", name, err)
	}
	if _, err := primary.ApproveLink(ctxT(t), code, history); err != nil {
		t.Fatalf("approve %s: %v", name, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return c
}

// newHome opens a Client on an empty home.
func newHome(t testing.TB, name string) *Client {
	t.Helper()
	c, err := New(Config{Home: t.TempDir(), Warn: func(err error) { t.Logf("warning for %s: %v", name, err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// events receives the backlog and renders every event as a line:
// "alice: text", "alice -> bob: text" (sync copy), "device alice added 2
// (Laptop)", "request alice", "dropped alice/2: why".
func events(t *testing.T, c *Client) []string {
	t.Helper()
	var out []string
	err := c.Receive(ctxT(t), 0, func(e Event) {
		switch e := e.(type) {
		case *MessageEvent:
			if e.To != "" {
				out = append(out, e.From+" -> "+e.To+": "+e.Text)
			} else {
				out = append(out, e.From+": "+e.Text)
			}
		case *DeviceEvent:
			out = append(out, fmt.Sprintf("device %s %s %d (%s)", e.From, e.Change, e.DeviceID, e.Name))
		case *RequestEvent:
			out = append(out, "request "+e.From)
		case *DroppedEvent:
			out = append(out, fmt.Sprintf("dropped %s/%d: %v", e.From, e.Device, e.Err))
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return out
}

// befriend makes a and b contacts: a writes first, b accepts.
func befriend(t *testing.T, a *Client, aName string, b *Client, bName string) {
	t.Helper()
	mustSend(t, a, bName, "hello "+bName)
	if got := events(t, b); !slices.Equal(got, []string{"request " + aName}) {
		t.Fatalf("%s got %q, want a request", bName, got)
	}
	if _, err := b.Accept(ctxT(t), aName); err != nil {
		t.Fatal(err)
	}
	events(t, a) // the delivery token
}

func want(t *testing.T, who string, got []string, w ...string) {
	t.Helper()
	if !slices.Equal(got, w) {
		t.Fatalf("%s got %q\nwant %q", who, got, w)
	}
}

// conversation renders a History as "> text" (outgoing) and "< text".
func conversation(t *testing.T, c *Client, peer string) []string {
	t.Helper()
	h, err := c.History(ctxT(t), peer, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range h {
		dir := "< "
		if e.Outgoing {
			dir = "> "
		}
		out = append(out, dir+e.Text)
	}
	return out
}

func TestDevicesEveryMessageOnEveryDevice(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob1 := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob1, "bob")

	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", true)
	alice3 := linkDevice(t, srv.URL, alice1, "Tablet", true)
	bob2 := linkDevice(t, srv.URL, bob1, "Phone", true)

	// Everyone hears of the new devices (a device is not told of itself).
	want(t, "alice1", events(t, alice1), "device bob added 2 (Phone)")
	want(t, "alice2", events(t, alice2), "device alice added 3 (Tablet)", "device bob added 2 (Phone)")
	want(t, "alice3", events(t, alice3), "device bob added 2 (Phone)")
	want(t, "bob1", events(t, bob1), "device alice added 2 (Laptop)", "device alice added 3 (Tablet)")
	want(t, "bob2", events(t, bob2))

	type step struct {
		from     *Client
		fromName string
		to       string
		text     string
	}
	alices := []*Client{alice1, alice2, alice3}
	bobs := []*Client{bob1, bob2}
	for _, s := range []step{
		{alice2, "alice", "bob", "from the laptop"},
		{bob2, "bob", "alice", "from the phone"},
		{alice1, "alice", "bob", "from the first"},
		{alice3, "alice", "bob", "from the tablet"},
		{bob1, "bob", "alice", "from bob's first"},
	} {
		mustSend(t, s.from, s.to, s.text)
		own, peers := alices, bobs
		if s.fromName == "bob" {
			own, peers = bobs, alices
		}
		for i, c := range own {
			if c == s.from {
				want(t, fmt.Sprintf("%s%d", s.fromName, i+1), events(t, c))
				continue
			}
			want(t, fmt.Sprintf("%s%d", s.fromName, i+1), events(t, c), s.fromName+" -> "+s.to+": "+s.text)
		}
		for i, c := range peers {
			want(t, fmt.Sprintf("%s%d", s.to, i+1), events(t, c), s.fromName+": "+s.text)
		}
	}
	// Every device shows the whole conversation, in the same order.
	all := conversation(t, alice1, "bob")
	want(t, "alice1's history", all, "> hello bob", "> from the laptop", "< from the phone", "> from the first", "> from the tablet", "< from bob's first")
	want(t, "alice2's history", conversation(t, alice2, "bob"), all...)
	want(t, "alice3's history", conversation(t, alice3, "bob"), all...)
	mirrored := make([]string, len(all))
	for i, l := range all {
		mirrored[i] = map[byte]string{'>': "<", '<': ">"}[l[0]] + l[1:]
	}
	want(t, "bob1's history", conversation(t, bob1, "alice"), mirrored...)
	want(t, "bob2's history", conversation(t, bob2, "alice"), mirrored...)

	devs, err := alice2.Devices(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range devs {
		names = append(names, fmt.Sprintf("%d %s current=%v primary=%v seen=%v", d.ID, d.Name, d.Current, d.Primary, !d.LastSeen.IsZero()))
	}
	want(t, "alice2's devices", names, "1  current=false primary=false seen=true", "2 Laptop current=true primary=false seen=false", "3 Tablet current=false primary=false seen=true")
}

func TestDevicesLinkTransfersHistoryUnlessAskedNot(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob, "bob")
	mustSend(t, bob, "alice", "how are you")
	mustSend(t, alice1, "bob", "fine")
	events(t, alice1)
	events(t, bob)

	withHistory := linkDevice(t, srv.URL, alice1, "Laptop", true)
	want(t, "linked device's history", conversation(t, withHistory, "bob"), conversation(t, alice1, "bob")...)
	h1, _ := alice1.History(ctxT(t), "bob", 0)
	h2, _ := withHistory.History(ctxT(t), "bob", 0)
	for i := range h1 {
		if h1[i].ID != h2[i].ID || !h1[i].Sent.Equal(h2[i].Sent) {
			t.Fatalf("history entry %d differs: %+v vs %+v", i, h1[i], h2[i])
		}
	}
	// Contacts come along: the new device writes to bob as a contact (no
	// message request on bob's side) and knows bob's delivery token.
	contacts, err := withHistory.Contacts(ctxT(t))
	if err != nil || len(contacts) != 1 || contacts[0].Username != "bob" || contacts[0].State != Accepted || !contacts[0].Sealed {
		t.Fatalf("contacts on the linked device: %+v %v", contacts, err)
	}
	events(t, bob)
	mustSend(t, withHistory, "bob", "hi from the laptop")
	want(t, "bob", events(t, bob), "alice: hi from the laptop")

	without := linkDevice(t, srv.URL, alice1, "Tablet", false)
	if h := conversation(t, without, "bob"); len(h) != 0 {
		t.Fatalf("--no-history device has history %q", h)
	}
	events(t, bob)
	mustSend(t, without, "bob", "hi from the tablet")
	want(t, "bob", events(t, bob), "alice: hi from the tablet")
	// From now on it keeps the conversation like every device.
	want(t, "tablet", conversation(t, without, "bob"), "> hi from the tablet")
}

func TestDevicesRemovedDeviceGetsNothing(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob, "bob")
	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", true)
	want(t, "bob", events(t, bob), "device alice added 2 (Laptop)")
	mustSend(t, bob, "alice", "to both")
	want(t, "alice1", events(t, alice1), "bob: to both")
	want(t, "alice2", events(t, alice2), "bob: to both")
	if n := count(t, bob, `SELECT COUNT(*) FROM sessions WHERE peer = 'alice' AND device = 2`); n != 1 {
		t.Fatalf("bob has %d sessions with alice/2", n)
	}

	if err := alice2.RemoveDevice(ctxT(t), 1); err == nil || !strings.Contains(err.Error(), "only the primary") {
		t.Fatalf("a linked device removed the primary: %v", err)
	}
	if err := alice1.RemoveDevice(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	// Bob is told, refetches alice's list and drops the session.
	want(t, "bob", events(t, bob), "device alice removed 2 ()")
	if n := count(t, bob, `SELECT COUNT(*) FROM sessions WHERE peer = 'alice' AND device = 2`); n != 0 {
		t.Fatalf("bob kept his session with the removed device")
	}
	mustSend(t, bob, "alice", "only the first now")
	mustSend(t, alice1, "bob", "and from the first")
	want(t, "alice1", events(t, alice1), "bob: only the first now")
	if n := count(t, bob, `SELECT COUNT(*) FROM sessions WHERE peer = 'alice' AND device = 2`); n != 0 {
		t.Fatalf("bob encrypted to the removed device again")
	}
	// The removed device is refused by the server and receives nothing.
	var got []Event
	err := alice2.Receive(ctxT(t), 0, func(e Event) { got = append(got, e) })
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "unauthorized" || len(got) != 0 {
		t.Fatalf("removed device: receive %v, events %v", err, got)
	}
	devs, err := alice1.Devices(ctxT(t))
	if err != nil || len(devs) != 1 || devs[0].ID != 1 {
		t.Fatalf("devices after removal: %+v %v", devs, err)
	}
}

func TestDevicesLimitOfSix(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	for i := 2; i <= 6; i++ {
		linkDevice(t, srv.URL, alice, fmt.Sprintf("d%d", i), false)
	}
	c := newHome(t, "seventh")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	codes := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := c.Link(ctx, srv.URL, "seventh", func(code string) error { codes <- code; return nil })
		done <- err
	}()
	code := <-codes
	if _, err := alice.ApproveLink(ctxT(t), code, false); err == nil || !strings.Contains(err.Error(), "already has 6 devices") {
		t.Fatalf("seventh device: %v", err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("link without approval succeeded")
	}
}

func TestDevicesRecoveryOntoFreshHome(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob, "bob")
	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", true)
	events(t, bob)
	events(t, alice2)

	if _, err := alice2.RecoveryKey(); err == nil {
		t.Fatal("a linked device gave out the recovery key")
	}
	key, err := alice1.RecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.ReplaceAll(key, " ", "")) != 64 || strings.Count(key, " ") != 15 {
		t.Fatalf("recovery key %q is not 64 hex digits in groups of 4", key)
	}
	other, _ := newUser(t, srv.URL, "carol").RecoveryKey()
	if _, err := newHome(t, "wrong").Restore(ctxT(t), srv.URL, "alice", other, "x"); err == nil || !strings.Contains(err.Error(), "recovery key does not match alice") {
		t.Fatalf("restore with carol's key: %v", err)
	}

	fresh := newHome(t, "New phone")
	info, err := fresh.Restore(ctxT(t), srv.URL, "alice", key, "New phone")
	if err != nil {
		t.Fatal(err)
	}
	if info.Username != "alice" || info.DeviceID != 3 {
		t.Fatalf("restored as %+v", info)
	}
	// The old primary (device 1) is gone: the server refuses it.
	err = alice1.Receive(ctxT(t), 0, func(Event) {})
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "unauthorized" {
		t.Fatalf("old primary after restore: %v", err)
	}
	want(t, "alice2", events(t, alice2), "device alice removed 1 ()", "device alice added 3 (New phone)")

	// The new primary sends and receives...
	mustSend(t, fresh, "bob", "restored")
	want(t, "bob", events(t, bob), "alice: restored")
	want(t, "alice2", events(t, alice2), "alice -> bob: restored")
	mustSend(t, bob, "alice", "welcome back")
	want(t, "fresh", events(t, fresh), "bob: welcome back")
	want(t, "alice2", events(t, alice2), "bob: welcome back")
	// ...and approves new devices.
	alice4 := linkDevice(t, srv.URL, fresh, "Desktop", true)
	want(t, "alice4", conversation(t, alice4, "bob"), "> restored", "< welcome back")
	devs, err := fresh.Devices(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	if !slices.Equal(ids, []uint32{2, 3, 4}) {
		t.Fatalf("devices after restore and link: %v", ids)
	}
}

func TestDevicesSyncCopyShownOnceAfterCrashBeforeAck(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob, "bob")
	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", true)
	events(t, alice2)
	mustSend(t, alice1, "bob", "exactly once")

	alice2.hookBeforeAck = func() error { return errCrash }
	var shown []Event
	if err := alice2.Receive(ctxT(t), 0, func(e Event) { shown = append(shown, e) }); !errors.Is(err, errCrash) || len(shown) != 0 {
		t.Fatalf("crashing receive: %v, shown %v", err, shown)
	}
	alice2.hookBeforeAck = nil
	alice2.mu.Lock()
	alice2.cur.close() // as after a restart: the server sends it again
	alice2.mu.Unlock()
	want(t, "alice2", events(t, alice2), "alice -> bob: exactly once")
	want(t, "alice2", events(t, alice2))
	want(t, "alice2's history", conversation(t, alice2, "bob"), "> hello bob", "> exactly once")
}

func TestDevicesSyncCopyOfARefusedMessageIsDropped(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", true)
	events(t, alice2)
	if _, err := alice1.Send(ctxT(t), "nobody", "to no one"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("send to a missing user: %v", err)
	}
	if n := count(t, alice1, `SELECT COUNT(*) FROM outbox`); n != 0 {
		t.Fatalf("%d rows left in the outbox", n)
	}
	want(t, "alice2", events(t, alice2))
}
