package call

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/wire"
)

// hostile is a server that tampers with what it pushes to one device: a
// proxy in front of the real server whose edit sees every envelope.
type hostile struct {
	URL  string
	mu   sync.Mutex
	edit func(e *wire.Envelope) *wire.Envelope // nil result: dropped
}

func newHostile(t *testing.T, upstream string) *hostile {
	h := &hostile{}
	up, _ := url.Parse(upstream)
	rp := httputil.NewSingleHostReverseProxy(up)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ws" {
			rp.ServeHTTP(w, r)
			return
		}
		down, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer down.CloseNow()
		down.SetReadLimit(1 << 20)
		upc, _, err := websocket.Dial(r.Context(), "ws"+strings.TrimPrefix(upstream, "http")+"/v1/ws", nil)
		if err != nil {
			return
		}
		defer upc.CloseNow()
		upc.SetReadLimit(1 << 20)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			defer cancel()
			for {
				typ, data, err := down.Read(ctx)
				if err != nil || upc.Write(ctx, typ, data) != nil {
					return
				}
			}
		}()
		for {
			typ, data, err := upc.Read(ctx)
			if err != nil {
				return
			}
			var f wire.ServerFrame
			h.mu.Lock()
			edit := h.edit
			h.mu.Unlock()
			if edit != nil && proto.Unmarshal(data, &f) == nil && f.GetEnvelope() != nil {
				e := edit(f.GetEnvelope())
				if e == nil {
					continue
				}
				f.Body = &wire.ServerFrame_Envelope{Envelope: e}
				if data, err = proto.Marshal(&f); err != nil {
					return
				}
			}
			if down.Write(ctx, typ, data) != nil {
				return
			}
		}
	}))
	t.Cleanup(hs.Close)
	h.URL = hs.URL
	return h
}

func (h *hostile) set(edit func(e *wire.Envelope) *wire.Envelope) {
	h.mu.Lock()
	h.edit = edit
	h.mu.Unlock()
}

// hostilePair has alice's device talk to the server through a hostile
// proxy (or bob's, if victimIsAlice is false); the two are contacts, so
// their signals are sealed. aRing and bRing are the devices' ring
// timeouts.
func hostilePair(t *testing.T, aRing, bRing time.Duration, victimIsAlice bool) (h *hostile, alice, bob *device) {
	url := startServer(t)
	h = newHostile(t, url)
	aURL, bURL := url, url
	if victimIsAlice {
		aURL = h.URL
	} else {
		bURL = h.URL
	}
	a := newClient(t, aURL, "alice")
	b := newClient(t, bURL, "bob")
	befriend(t, a, b, "bob")
	return h, newDevice(t, "alice", a, devOpts{ring: aRing}), newDevice(t, "bob", b, devOpts{ring: bRing})
}

func TestCallFailsCleanlyWhenServerFlipsBytes(t *testing.T) {
	// Alice's ring timeout is short, bob's long: his call ends by her
	// hangup, not by his own timer.
	h, alice, bob := hostilePair(t, 2*time.Second, guard, true)
	// Every message to alice arrives with one byte flipped: the sealed
	// envelope no longer opens, so it names no sender. Anyone can send
	// such junk, so it must not end her call at once; the call fails
	// when it times out, saying its signalling was corrupted.
	h.set(func(e *wire.Envelope) *wire.Envelope {
		c := proto.Clone(e).(*wire.Envelope)
		c.Content[len(c.Content)/2] ^= 0x40
		return c
	})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing) // bob's ringing reaches alice flipped
	a := alice.ended()
	if a.Reason != ReasonFailed || a.Err == nil || !strings.Contains(a.Err.Error(), "signalling was corrupted") ||
		!strings.Contains(a.Err.Error(), "sealed message failed to open") {
		t.Fatalf("caller ended with %s (%v), want a failure naming the corrupted signalling", a.Reason, a.Err)
	}
	if b := bob.ended(); b.Reason != ReasonFailed || b.Err == nil || !strings.Contains(b.Err.Error(), "failed on the other side") {
		t.Fatalf("callee ended with %s (%v), want failed by the caller", b.Reason, b.Err)
	}
}

func TestCallFailsCleanlyWhenServerFlipsUnsealedBytes(t *testing.T) {
	url := startServer(t)
	h := newHostile(t, url)
	// Strangers: signals go authenticated, so the failure names the peer.
	a := newClient(t, h.URL, "alice")
	b := newClient(t, url, "bob")
	alice := newDevice(t, "alice", a, devOpts{})
	bob := newDevice(t, "bob", b, devOpts{})
	h.set(func(e *wire.Envelope) *wire.Envelope {
		c := proto.Clone(e).(*wire.Envelope)
		c.Content[len(c.Content)-1] ^= 1
		return c
	})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing)
	// The envelope names bob: his ringing failed to decrypt, and the call
	// fails at once, not at the (60 s) timeout.
	a2 := alice.ended()
	if a2.Reason != ReasonFailed || a2.Err == nil || !strings.Contains(a2.Err.Error(), "signalling was corrupted: a message from bob") {
		t.Fatalf("caller ended with %s (%v)", a2.Reason, a2.Err)
	}
	if b := bob.ended(); b.Reason != ReasonFailed {
		t.Fatalf("callee ended with %s (%v), want failed", b.Reason, b.Err)
	}
}

func TestCallFailsAtTimeoutWhenServerDropsSignals(t *testing.T) {
	h, alice, bob := hostilePair(t, time.Second, time.Second, false)
	h.set(func(*wire.Envelope) *wire.Envelope { return nil }) // nothing reaches bob
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	// Nothing failed to decrypt: a plain timeout.
	if a := alice.ended(); a.Reason != ReasonTimeout || a.Err != nil {
		t.Fatalf("caller ended with %s (%v), want timeout", a.Reason, a.Err)
	}
	bob.quiet()
}

// junk is what Receive hands over for a sealed envelope that did not
// open: it names nobody (client/sealed.go).
func junk() *client.DroppedEvent {
	return &client.DroppedEvent{Err: errors.New("sealed message refused: junk")}
}

func TestCallSurvivesUndecryptableMessagesFromOthers(t *testing.T) {
	_, alice, bob := pair(t, devOpts{})
	ac, err := alice.phone.Dial(ctxT(t), "bob", Options{})
	if err != nil {
		t.Fatal(err)
	}
	bc := bob.until(Ringing).Call
	alice.until(Ringing)
	// A stranger's junk, an undecryptable message from someone else and
	// from the account's own other device reach both sides while the call
	// is set up: none of them is the peer's, so the call goes on.
	for _, d := range []*device{alice, bob} {
		d.phone.Handle(junk())
		d.phone.Handle(&client.DroppedEvent{From: "carol", Device: 1, Err: errors.New("bad MAC")})
		d.phone.Handle(&client.DroppedEvent{From: d.name, Device: 2, Err: errors.New("bad MAC")})
	}
	if err := bc.Answer(Media{}); err != nil {
		t.Fatal(err)
	}
	alice.until(Connected)
	bob.until(Connected)
	for _, d := range []*device{alice, bob} {
		d.phone.Handle(junk())
	}
	a, b := hangupBoth(t, ac, alice, bob)
	if a.Reason != ReasonHangup || b.Reason != ReasonRemoteHangup {
		t.Fatalf("ended with %s (%v) / %s (%v)", a.Reason, a.Err, b.Reason, b.Err)
	}
}

func TestCallFromPeerUndecryptableFailsAtOnce(t *testing.T) {
	// Ring timeouts far beyond the test: only the drop can end the call.
	_, alice, bob := pair(t, devOpts{ring: guard})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing)
	alice.until(Ringing)
	// What Receive hands over for a sealed envelope that opened (its
	// certificate names bob's device) but whose ratchet message failed.
	alice.phone.Handle(&client.DroppedEvent{From: "bob", Device: 1, Err: errors.New("ratchet: bad MAC")})
	a := alice.ended()
	if a.Reason != ReasonFailed || a.Err == nil || !strings.Contains(a.Err.Error(), "a message from bob (device 1) failed to decrypt") {
		t.Fatalf("caller ended with %s (%v)", a.Reason, a.Err)
	}
	if b := bob.ended(); b.Reason != ReasonFailed {
		t.Fatalf("callee ended with %s (%v), want failed", b.Reason, b.Err)
	}
}

func TestCallTimingOutAfterJunkSaysSignallingCorrupted(t *testing.T) {
	url := startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	befriend(t, a, b, "bob")
	alice := newDevice(t, "alice", a, devOpts{ring: guard})
	bob := newDevice(t, "bob", b, devOpts{ring: time.Second})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing)
	bob.phone.Handle(junk()) // perhaps the sibling's "answered elsewhere"
	e := bob.ended()
	if e.Reason != ReasonFailed || e.Err == nil || !strings.Contains(e.Err.Error(), "no answer within 1s, and the call's signalling was corrupted meanwhile: a sealed message failed to open") {
		t.Fatalf("callee ended with %s (%v)", e.Reason, e.Err)
	}
	// The callee's failure reaches the caller.
	if e := alice.ended(); e.Reason != ReasonFailed {
		t.Fatalf("caller ended with %s (%v)", e.Reason, e.Err)
	}
}
