package call

import (
	"context"
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
// proxy; the two are contacts, so their signals are sealed.
func hostilePair(t *testing.T, ring time.Duration, victimIsAlice bool) (h *hostile, alice, bob *device) {
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
	return h, newDevice(t, "alice", a, devOpts{ring: ring}), newDevice(t, "bob", b, devOpts{ring: ring})
}

func TestCallFailsCleanlyWhenServerFlipsBytes(t *testing.T) {
	h, alice, bob := hostilePair(t, 5*time.Second, true)
	// Every message to alice arrives with one byte flipped: the sealed
	// envelope (and the ratchet message inside) no longer authenticates.
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
	if a.Reason != ReasonFailed || a.Err == nil || !strings.Contains(a.Err.Error(), "failed to open") {
		t.Fatalf("caller ended with %s (%v), want a failure naming the bad message", a.Reason, a.Err)
	}
	if b := bob.ended(); b.Reason != ReasonFailed {
		t.Fatalf("callee ended with %s (%v), want failed", b.Reason, b.Err)
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
	a2 := alice.ended()
	if a2.Reason != ReasonFailed || a2.Err == nil || !strings.Contains(a2.Err.Error(), "from bob") {
		t.Fatalf("caller ended with %s (%v)", a2.Reason, a2.Err)
	}
	bob.ended()
}

func TestCallFailsAtTimeoutWhenServerDropsSignals(t *testing.T) {
	h, alice, bob := hostilePair(t, time.Second, false)
	h.set(func(*wire.Envelope) *wire.Envelope { return nil }) // nothing reaches bob
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	if a := alice.ended(); a.Reason != ReasonTimeout {
		t.Fatalf("caller ended with %s (%v), want timeout", a.Reason, a.Err)
	}
	bob.quiet()
}
