package client

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/sealed"
	"github.com/hush-chat/hush/wire"
)

func offer(id byte) *wire.CallSignal {
	return &wire.CallSignal{CallId: bytes.Repeat([]byte{id}, CallIDSize), Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{Sdp: "v=0 fake", Video: true}}}
}

// calls receives everything pending and returns the call events and
// everything else, rendered by events' rules.
func calls(t *testing.T, c *Client) (got []*CallEvent, other []Event) {
	t.Helper()
	err := c.Receive(ctxT(t), 0, func(e Event) {
		if ce, ok := e.(*CallEvent); ok {
			got = append(got, ce)
			return
		}
		other = append(other, e)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, other
}

func TestCallSignalReachesEveryDeviceAndIsNeverStored(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	bob2 := linkDevice(t, srv.URL, bob, "bob-laptop", false)
	sealedPair(t, alice, bob)
	events(t, bob2) // the acceptance's sync copy
	ctx := ctxT(t)

	if err := alice.SendCall(ctx, "bob", offer(1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{bob, bob2} {
		got, other := calls(t, c)
		if len(got) != 1 || len(other) != 0 {
			t.Fatalf("got calls %v and %v, want one offer", got, other)
		}
		e := got[0]
		if e.From != "alice" || e.Device != 1 || !e.Contact || !proto.Equal(e.Signal, offer(1)) {
			t.Fatalf("call event %+v", e)
		}
		// Handed over once, not kept for a later Receive.
		if got, other := calls(t, c); len(got)+len(other) != 0 {
			t.Fatalf("handed over again: %v %v", got, other)
		}
	}
	// Nothing about the call in any history or in the outbox.
	want(t, "bob's history", conversation(t, bob, "alice"), "< hi bob")
	want(t, "alice's history", conversation(t, alice, "bob"), "> hi bob")
	var n int
	if err := alice.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("alice's outbox holds %d rows (%v)", n, err)
	}

	// Answered on one device: it tells its siblings.
	hangup := &wire.CallSignal{CallId: offer(1).CallId, Device: 1,
		Kind: &wire.CallSignal_Hangup{Hangup: &wire.CallHangup{Reason: wire.CallHangup_ANSWERED_ELSEWHERE}}}
	if err := bob.SendCall(ctx, "bob", hangup); err != nil {
		t.Fatal(err)
	}
	got, _ := calls(t, bob2)
	if len(got) != 1 || got[0].From != "bob" || !got[0].Contact || !proto.Equal(got[0].Signal, hangup) {
		t.Fatalf("bob's laptop got %v", got)
	}
	if got, _ := calls(t, alice); len(got) != 0 {
		t.Fatalf("alice got bob's own-device signal: %v", got)
	}
}

func TestCallFromStrangerRingsButIsNoRequest(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	if err := carol.SendCall(ctxT(t), "bob", offer(2)); err != nil {
		t.Fatal(err)
	}
	got, other := calls(t, bob)
	if len(got) != 1 || got[0].Contact || got[0].From != "carol" || len(other) != 0 {
		t.Fatalf("got %v %v, want one call from a stranger", got, other)
	}
	if reqs, err := bob.Requests(ctxT(t)); err != nil || len(reqs) != 0 {
		t.Fatalf("requests: %v %v", reqs, err)
	}
	if k, _ := bob.ContactInfo(ctxT(t), "carol"); k.State != Stranger {
		t.Fatalf("carol became %v by calling", k.State)
	}
	if k, _ := carol.ContactInfo(ctxT(t), "bob"); k.State != Stranger {
		t.Fatalf("bob became %v for carol by her calling", k.State)
	}
}

func TestCallFromBlockedNeverRingsAndSessionStaysInStep(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	if err := bob.Block(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// Sealed, so the server cannot refuse it: bob's client drops it.
	if err := alice.SendCall(ctx, "bob", offer(3)); err != nil {
		t.Fatal(err)
	}
	if got, other := calls(t, bob); len(got)+len(other) != 0 {
		t.Fatalf("a blocked caller got through: %v %v", got, other)
	}
	if err := bob.SendCall(ctx, "alice", offer(4)); err == nil {
		t.Fatal("bob called someone he blocked")
	}
	if err := bob.Unblock(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "after the call")
	want(t, "bob", events(t, bob), "alice: after the call")
}

// TestUndecryptableCallSignalNamesItsSenderOnlyIfTheSealOpened pins what
// the call engine relies on to fail only the right call
// (internal/call.Phone.Handle): a sealed envelope that opens but whose
// ratchet message fails is dropped naming the certified sender; one that
// does not open names nobody.
func TestUndecryptableCallSignalNamesItsSenderOnlyIfTheSealOpened(t *testing.T) {
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
	// A server holding its signing key can certify alice's real device
	// and seal junk as hers: the seal opens, the ratchet refuses.
	cert, err := sealed.IssueCertificate(serverKey, "alice", aa.DeviceID, aa.Identity.Public(), aa.Signing.Public(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	resealed, err := sealed.Seal(ba.Identity.Public(), cert, bytes.Repeat([]byte{0x42}, 300))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func(e *wire.Envelope)
		from   string
		device uint32
	}{
		{"resealed junk", func(e *wire.Envelope) { e.Content = resealed }, "alice", aa.DeviceID},
		{"flipped seal", func(e *wire.Envelope) { e.Content[len(e.Content)/2] ^= 1 }, "", 0},
	} {
		m.set(func(f *wire.ServerFrame) [][]byte {
			if e := f.GetEnvelope(); e != nil && e.GetSealed() {
				tc.edit(e)
			}
			return raw(f)
		})
		if err := alice.SendCall(ctxT(t), "bob", offer(6)); err != nil {
			t.Fatal(err)
		}
		got, other := calls(t, bob)
		if len(got) != 0 || len(other) != 1 {
			t.Fatalf("%s: got %v %v, want one drop", tc.name, got, other)
		}
		d, ok := other[0].(*DroppedEvent)
		if !ok || d.From != tc.from || d.Device != tc.device || d.Err == nil {
			t.Fatalf("%s: got %#v, want a drop naming %q/%d", tc.name, other[0], tc.from, tc.device)
		}
		m.set(nil)
	}
	// Neither moved bob's session: alice's next signal rings.
	if err := alice.SendCall(ctxT(t), "bob", offer(7)); err != nil {
		t.Fatal(err)
	}
	if got, other := calls(t, bob); len(got) != 1 || len(other) != 0 || got[0].From != "alice" {
		t.Fatalf("after the drops bob got %v %v", got, other)
	}
}

func TestStaleCallSignalIgnored(t *testing.T) {
	srv := startServer(t)
	bob := newUser(t, srv.URL, "bob")
	for _, skew := range []time.Duration{-CallMaxAge - 5*time.Second, CallMaxAge + 5*time.Second} {
		c, err := New(Config{Home: t.TempDir(), Now: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Register(ctxT(t), srv.URL, "carol"+map[bool]string{true: "late", false: "early"}[skew < 0]); err != nil {
			t.Fatal(err)
		}
		if err := c.SendCall(ctxT(t), "bob", offer(5)); err != nil {
			t.Fatal(err)
		}
		if got, other := calls(t, bob); len(got)+len(other) != 0 {
			t.Fatalf("a signal sent %v away rang: %v %v", skew, got, other)
		}
	}
}

func TestSendCallRefusesMalformedSignals(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	newUser(t, srv.URL, "bob")
	id := offer(1).CallId
	for name, s := range map[string]*wire.CallSignal{
		"nil":         nil,
		"short id":    {CallId: id[:15], Kind: &wire.CallSignal_Ringing{Ringing: &wire.CallRinging{}}},
		"no kind":     {CallId: id},
		"empty sdp":   {CallId: id, Kind: &wire.CallSignal_Answer{Answer: &wire.CallAnswer{}}},
		"huge sdp":    {CallId: id, Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{Sdp: string(make([]byte, MaxCallSDP+1))}}},
		"empty ice":   {CallId: id, Kind: &wire.CallSignal_Ice{Ice: &wire.CallIce{}}},
		"odd reason":  {CallId: id, Kind: &wire.CallSignal_Hangup{Hangup: &wire.CallHangup{Reason: 99}}},
		"huge ice":    {CallId: id, Kind: &wire.CallSignal_Ice{Ice: &wire.CallIce{Candidate: string(make([]byte, MaxCallCandidate+1))}}},
		"nil offer":   {CallId: id, Kind: &wire.CallSignal_Offer{}},
		"nil hangups": {CallId: id, Kind: &wire.CallSignal_Hangup{}},
	} {
		if err := alice.SendCall(ctxT(t), "bob", s); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: sent (%v)", name, err)
		}
	}
	if err := alice.SendCall(ctxT(t), "no such name!", offer(1)); err == nil {
		t.Error("called a malformed username")
	}
}

// FuzzCheckCallSignal feeds decrypted Content bytes to the call-signal
// checks receiveCall applies: no panic, and whatever passes has the shape
// the call engine relies on.
func FuzzCheckCallSignal(f *testing.F) {
	for _, s := range []*wire.CallSignal{offer(1), {CallId: offer(1).CallId, Kind: &wire.CallSignal_Ice{Ice: &wire.CallIce{Candidate: `{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}`}}}} {
		b, err := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_Call{Call: s}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ct wire.Content
		if proto.Unmarshal(b, &ct) != nil || ct.GetCall() == nil {
			return
		}
		s := ct.GetCall()
		if CheckCallSignal(s) != nil {
			return
		}
		if len(s.GetCallId()) != CallIDSize || s.GetKind() == nil {
			t.Fatalf("accepted %v", s)
		}
		if o := s.GetOffer(); o != nil && (o.GetSdp() == "" || len(o.GetSdp()) > MaxCallSDP) {
			t.Fatalf("accepted offer of %d bytes", len(o.GetSdp()))
		}
	})
}
