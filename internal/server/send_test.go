package server

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/coder/websocket"
	"slices"
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// pair registers alice and bob and connects alice.
func pair(t *testing.T, ts *testServer) (alice, bob *testUser, ac *wsClient) {
	t.Helper()
	alice, bob = newUser(t, "alice", 1), newUser(t, "bob", 1)
	ts.mustRegister(t, alice)
	ts.mustRegister(t, bob)
	return alice, bob, ts.dial(t, alice)
}

func TestSendRejects(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	ct := []byte("opaque ciphertext")

	r := ac.do(t, sendFrame(newMessageID(), "carol", ct))
	wantError(t, r, codeNoUser)
	if r.GetError().Message != `no user "carol"` {
		t.Fatalf("message %q", r.GetError().Message)
	}
	wantError(t, ac.do(t, sendFrame(newMessageID(), "Not A Name!", ct)), codeNoUser)
	wantError(t, ac.do(t, sendFrame(newMessageID()[:15], "bob", ct)), codeBadRequest)
	wantError(t, ac.do(t, sendFrame(newMessageID(), "bob", nil)), codeBadRequest)
	wantError(t, ac.do(t, sendFrame(newMessageID(), "bob", ct, 1, 1)), codeBadRequest)
	wantError(t, ac.do(t, sendFrame(newMessageID(), "bob", ct, 1, 2, 3, 4, 5, 6, 7)), codeBadRequest)
	wantError(t, ac.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_Send{Send: &wire.SendRequest{MessageId: newMessageID(), Recipient: "bob"}}}), codeBadRequest)

	big := make([]byte, MaxContentSize+1)
	r = ac.do(t, sendFrame(newMessageID(), "bob", big))
	wantError(t, r, codeTooLarge)
	if bytes.Contains([]byte(r.GetError().Message), big[:16]) {
		t.Fatal("error echoes content")
	}
	// Exactly at the cap is fine.
	ac.send(t, "bob", make([]byte, MaxContentSize))
}

func TestSendDeviceMismatch(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	// A send while bob has one device (so the server has seen that list),
	// then bob adds a second device (id 3).
	ac.send(t, "bob", []byte("before"))
	second := newUser(t, "bob", 0)
	bc := ts.dial(t, bob)
	list := bob.deviceList(t, 2,
		identity.Device{ID: 1, SigningKey: bob.dev.Signing.Public(), IdentityKey: bob.dev.Identity.Public()},
		identity.Device{ID: 3, SigningKey: second.dev.Signing.Public(), IdentityKey: second.dev.Identity.Public()})
	if r := bc.do(t, updateList(list)); r.GetAccount() == nil {
		t.Fatalf("update_device_list: %v", r)
	}

	for _, tc := range []struct {
		devices        []uint32
		missing, extra []uint32
	}{
		{[]uint32{1}, []uint32{3}, nil},
		{[]uint32{3}, []uint32{1}, nil},
		{[]uint32{1, 2, 3}, nil, []uint32{2}},
		{[]uint32{5, 2}, []uint32{1, 3}, []uint32{2, 5}},
	} {
		r := ac.do(t, sendFrame(newMessageID(), "bob", []byte("x"), tc.devices...)).GetSent()
		if r == nil || r.Stored || !slices.Equal(r.MissingDevices, tc.missing) || !slices.Equal(r.ExtraDevices, tc.extra) {
			t.Errorf("copies for %v: got %v, want missing %v extra %v", tc.devices, r, tc.missing, tc.extra)
		}
	}
	// Nothing was queued by the refused sends.
	if envs := bc.backlog(t); len(envs) != 1 || string(envs[0].Content) != "before" {
		t.Fatalf("backlog %v: refused sends were queued", envs)
	}
	ac.send(t, "bob", []byte("both"), 3, 1)
	if e := bc.envelope(t); string(e.Content) != "both" {
		t.Fatalf("got %q", e.Content)
	}
}

func TestSendDuplicateStoredOnce(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	id := newMessageID()
	for range 3 {
		if r := ac.do(t, sendFrame(id, "bob", []byte("once"))); !r.GetSent().GetStored() {
			t.Fatalf("retry not acknowledged as stored: %v", r)
		}
	}
	envs := ts.dial(t, bob).backlog(t)
	if len(envs) != 1 || !bytes.Equal(envs[0].MessageId, id) {
		t.Fatalf("got %d envelopes, want the message once", len(envs))
	}
}

// TestSendToSelfSkipsSendingDevice: a send to one's own account (a sync
// copy) goes to every device but the sending one (§9.8).
func TestSendToSelfSkipsSendingDevice(t *testing.T) {
	ts := startServer(t)
	alice, _, ac := pair(t, ts)
	if n := len(ac.backlog(t)); n != 0 {
		t.Fatalf("%d unexpected messages", n)
	}
	// Alone on the account, a device has no one to sync.
	r := ac.do(t, sendFrame(newMessageID(), "alice", []byte("x"), 1)).GetSent()
	if r == nil || r.Stored || !slices.Equal(r.ExtraDevices, []uint32{1}) || len(r.MissingDevices) != 0 {
		t.Fatalf("send to self with one device: %v, want device 1 extra", r)
	}

	alice2, alice3 := newDeviceOf(t, alice, 2, 0), newDeviceOf(t, alice, 3, 0)
	setList(t, ac, listOf(t, 2, alice, alice2, alice3))
	for _, tc := range []struct {
		devices        []uint32
		missing, extra []uint32
	}{
		{[]uint32{1, 2, 3}, nil, []uint32{1}},
		{[]uint32{2}, []uint32{3}, nil},
	} {
		r := ac.do(t, sendFrame(newMessageID(), "alice", []byte("x"), tc.devices...)).GetSent()
		if r == nil || r.Stored || !slices.Equal(r.MissingDevices, tc.missing) || !slices.Equal(r.ExtraDevices, tc.extra) {
			t.Errorf("copies for %v: got %v, want missing %v extra %v", tc.devices, r, tc.missing, tc.extra)
		}
	}
	ac.send(t, "alice", []byte("note to self"), 2, 3)
	for _, d := range []*testUser{alice2, alice3} {
		e := ts.dial(t, d).envelope(t)
		if e.Sender != "alice" || e.SenderDevice != 1 || e.Sealed || string(e.Content) != "note to self" {
			t.Fatalf("device %d got %v", d.dev.ID, e)
		}
	}
	// Device 2 syncs devices 1 and 3.
	ts.dial(t, alice2).send(t, "alice", []byte("from 2"), 1, 3)
	if e := ac.envelope(t); e.SenderDevice != 2 || string(e.Content) != "from 2" {
		t.Fatalf("device 1 got %v", e)
	}
}

func TestSendRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.SendsPerMinute, c.Limits.SendBurst = 1, 3 })
	_, _, ac := pair(t, ts)
	for range 3 {
		ac.send(t, "bob", []byte("x"))
	}
	wantError(t, ac.do(t, sendFrame(newMessageID(), "bob", []byte("x"))), codeRateLimited)
}

func TestPrekeyFetchRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.PrekeyFetchesPerMinute, c.Limits.PrekeyFetchBurst = 1, 2 })
	_, bob, ac := pair(t, ts)
	fetchBundle(t, ac, bob)
	fetchBundle(t, ac, bob)
	wantError(t, ac.do(t, getPrekeys("bob")), codeRateLimited)
}

func TestConnectionLimitPerIP(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.MaxConnsPerIP = 2 })
	_, _, ac := pair(t, ts)
	_ = ac
	ts.dialRaw(t)
	resp, err := httpGetWS(ts)
	if err != nil {
		t.Fatal(err)
	}
	if resp != 429 {
		t.Fatalf("third connection: HTTP %d, want 429", resp)
	}
	// Closing one frees a slot (once the server's handler has returned,
	// a moment after our close completes).
	ac.close()
	eventually(t, "a slot is freed", func() bool {
		s, _ := httpGetWS(ts)
		return s == 101
	})
}

func updateList(list []byte) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_UpdateDeviceList{UpdateDeviceList: &wire.UpdateDeviceListRequest{DeviceList: list}}}
}

// httpGetWS opens a WebSocket and returns the HTTP status of the upgrade.
func httpGetWS(ts *testServer) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+ts.addr+"/v1/ws", nil)
	if c != nil {
		c.CloseNow()
	}
	if resp == nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// eventually polls cond until it holds, failing after waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPipelinedSendsKeepOrder writes more sends than the per-connection
// queue holds without waiting for replies: every one is answered stored,
// and the recipient gets them in the order they were sent.
func TestPipelinedSendsKeepOrder(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	const n = maxPendingSends + 50
	for i := range n {
		f := sendFrame(newMessageID(), "bob", fmt.Appendf(nil, "%d", i))
		f.Id = uint64(1000 + i)
		writeFrame(t, ac.conn, f)
	}
	got := map[uint64]bool{}
	for range n {
		select {
		case r := <-ac.replies:
			if !r.GetSent().GetStored() || r.Id < 1000 || r.Id >= 1000+n || got[r.Id] {
				t.Fatalf("reply %v", r)
			}
			got[r.Id] = true
		case <-time.After(waitFor):
			t.Fatalf("%d of %d sends answered", len(got), n)
		}
	}
	envs := ts.dial(t, bob).backlog(t)
	if len(envs) != n {
		t.Fatalf("%d messages queued, want %d", len(envs), n)
	}
	for i, e := range envs {
		if string(e.Content) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: order lost", i, e.Content)
		}
	}
}

// TestSendBatchWithStaleDeviceFallsBack stores a batch in which one send
// names a device that no longer exists: the store refuses the whole
// batch, and the queue retries one by one so only that send fails.
func TestSendBatchWithStaleDeviceFallsBack(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	var ss *session
	ts.srv.mu.Lock()
	for s := range ts.srv.sessions {
		if s.authed.Load() && s.ref.Username == alice.name {
			ss = s
		}
	}
	ts.srv.mu.Unlock()
	msg := func(dev uint32, content string) []store.Message {
		now := time.Now()
		return []store.Message{{Recipient: store.DeviceRef{Username: "bob", ID: dev}, MessageID: newMessageID(),
			Sender: "alice", SenderDevice: 1, Content: []byte(content), Received: now, Expires: now.Add(time.Hour)}}
	}
	ss.sends.store([]pendingSend{
		{id: 901, recipient: "bob", msgs: msg(1, "first")},
		{id: 902, recipient: "bob", msgs: msg(9, "stale")},
		{id: 903, recipient: "bob", msgs: msg(1, "third")},
	})
	want := map[uint64]string{901: "", 902: codeDeviceMismatch, 903: ""}
	for range want {
		r := <-ac.replies
		code, ok := want[r.Id]
		if !ok || r.GetError().GetCode() != code || (code == "" && !r.GetSent().GetStored()) {
			t.Fatalf("reply %v", r)
		}
		delete(want, r.Id)
	}
	envs := ts.dial(t, bob).backlog(t)
	if len(envs) != 2 || string(envs[0].Content) != "first" || string(envs[1].Content) != "third" {
		t.Fatalf("stored %v", envs)
	}
}
