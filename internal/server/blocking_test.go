package server

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/hush-chat/hush/wire"
)

func setBlockedFrame(names ...string) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_SetBlocked{SetBlocked: &wire.SetBlockedRequest{Usernames: names}}}
}

// TestBlockedSenderIsDroppedSilently: bob blocks alice. Alice's sends get
// exactly the answers they would get otherwise (stored, or the device
// mismatch), but nothing reaches bob; carol's do. Unblocking takes effect
// at once.
func TestBlockedSenderIsDroppedSilently(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	carol := newUser(t, "carol", 0)
	ts.mustRegister(t, carol)
	cc := ts.dial(t, carol)
	bc := ts.dial(t, bob)
	if n := len(bc.backlog(t)); n != 0 {
		t.Fatalf("%d unexpected messages", n)
	}
	// Names are normalized and kept once; a blocked name need not exist.
	if r := bc.do(t, setBlockedFrame("ALICE", "mallory", "alice")); r.GetOk() == nil {
		t.Fatalf("set_blocked: %v", r)
	}
	if got, err := ts.srv.store.Blocked(t.Context(), "bob"); err != nil || !slices.Equal(got, []string{"alice", "mallory"}) {
		t.Fatalf("stored blocked list %q, %v", got, err)
	}

	ac.send(t, "bob", []byte("from a blocked sender"))
	id := newMessageID()
	for range 2 { // a retry is answered the same
		if r := ac.do(t, sendFrame(id, "bob", []byte("again"))); !r.GetSent().GetStored() {
			t.Fatalf("blocked send answered %v, not stored", r)
		}
	}
	r := ac.do(t, sendFrame(newMessageID(), "bob", []byte("x"), 1, 2)).GetSent()
	if r == nil || r.Stored || !slices.Equal(r.ExtraDevices, []uint32{2}) {
		t.Fatalf("blocked send with a wrong device set answered %v, want the ordinary extra-device answer", r)
	}
	cc.send(t, "bob", []byte("from carol"))
	if e := bc.envelope(t); e.Sender != "carol" || string(e.Content) != "from carol" {
		t.Fatalf("bob got %v, want only carol's message", e)
	}
	s, body := ts.get(t, "/metrics")
	if s != 200 || !bytes.Contains(body, []byte("hush_messages_dropped_blocked_total 3")) {
		t.Fatalf("dropped-message metric missing or wrong")
	}

	if r := bc.do(t, setBlockedFrame()); r.GetOk() == nil {
		t.Fatalf("set_blocked (clear): %v", r)
	}
	ac.send(t, "bob", []byte("unblocked"))
	if e := bc.envelope(t); e.Sender != "alice" || string(e.Content) != "unblocked" {
		t.Fatalf("bob got %v after unblocking alice", e)
	}
	bc.close()
	if envs := ts.dial(t, bob).backlog(t); len(envs) != 2 {
		t.Fatalf("bob's queue holds %d messages, want carol's and the one after unblocking", len(envs))
	}
}

func TestSetBlockedRejects(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	names := make([]string, MaxBlocked+1)
	for i := range names {
		names[i] = fmt.Sprintf("user%d", i)
	}
	wantError(t, ac.do(t, setBlockedFrame(names...)), codeBadRequest)
	wantError(t, ac.do(t, setBlockedFrame("bob", "Not A Name!")), codeBadRequest)
	wantError(t, ac.do(t, setBlockedFrame("bob", "Alice")), codeBadRequest)
	if got, err := ts.srv.store.Blocked(t.Context(), "alice"); err != nil || len(got) != 0 {
		t.Fatalf("a refused list was stored: %q, %v", got, err)
	}
	if r := ac.do(t, setBlockedFrame(names[:MaxBlocked]...)); r.GetOk() == nil {
		t.Fatalf("set_blocked with %d names: %v", MaxBlocked, r)
	}
	if got, _ := ts.srv.store.Blocked(t.Context(), "alice"); len(got) != MaxBlocked {
		t.Fatalf("stored %d names, want %d", len(got), MaxBlocked)
	}
}
