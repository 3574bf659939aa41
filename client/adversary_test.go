package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// mitm is a hostile server: a proxy in front of the real one that can
// rewrite, drop, reorder, replay or inject the frames the server sends.
type mitm struct {
	URL string
	mu  sync.Mutex
	// edit maps each server frame to the raw frames the client gets
	// instead; nil passes everything through.
	edit func(f *wire.ServerFrame) [][]byte
}

func newMITM(t *testing.T, upstream string) *mitm {
	t.Helper()
	m := &mitm{}
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
		down.SetReadLimit(maxFrame)
		wsUp, _ := wsURL(upstream)
		upc, _, err := websocket.Dial(r.Context(), wsUp, nil)
		if err != nil {
			return
		}
		defer upc.CloseNow()
		upc.SetReadLimit(maxFrame)
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
			_, data, err := upc.Read(ctx)
			if err != nil {
				return
			}
			out := [][]byte{data}
			m.mu.Lock()
			edit := m.edit
			m.mu.Unlock()
			if edit != nil {
				var f wire.ServerFrame
				if err := proto.Unmarshal(data, &f); err != nil {
					t.Errorf("server sent a bad frame: %v", err)
					return
				}
				out = edit(&f)
			}
			for _, o := range out {
				if down.Write(ctx, websocket.MessageBinary, o) != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(hs.Close)
	m.URL = hs.URL
	return m
}

func (m *mitm) set(edit func(f *wire.ServerFrame) [][]byte) {
	m.mu.Lock()
	m.edit = edit
	m.mu.Unlock()
}

func raw(fs ...*wire.ServerFrame) [][]byte {
	var out [][]byte
	for _, f := range fs {
		b, err := proto.Marshal(f)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// hostileSetup registers alice and bob directly and returns bob's client
// talking through the proxy.
func hostileSetup(t *testing.T) (srv *testServer, m *mitm, alice, bob *Client) {
	srv = startServer(t)
	m = newMITM(t, srv.URL)
	alice = newUser(t, m.URL, "alice")
	bob = newUser(t, m.URL, "bob")
	return srv, m, alice, bob
}

func TestHostileServerReplaysEnvelopes(t *testing.T) {
	_, m, alice, bob := hostileSetup(t)
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "say it once")
	var saved *wire.Envelope
	// Each envelope arrives twice, plus once more under a new message id
	// (which the ratchet recognises as a replay).
	m.set(func(f *wire.ServerFrame) [][]byte {
		e := f.GetEnvelope()
		if e == nil {
			return raw(f)
		}
		if saved == nil { // alice's message, not bob's delivery receipt pushed to alice
			saved = proto.Clone(e).(*wire.Envelope)
		}
		forged := proto.Clone(f).(*wire.ServerFrame)
		forged.GetEnvelope().MessageId = []byte("0123456789abcdef")
		forged.GetEnvelope().ServerId += 1000
		return raw(f, f, forged)
	})
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: say it once"}) {
		t.Fatalf("bob got %q", texts(got))
	}
	if len(drops) != 1 || drops[0].From != "alice" {
		t.Fatalf("dropped %v, want the one forged replay", drops)
	}
	// Later, on a new connection, the acked envelope is replayed again.
	m.set(func(f *wire.ServerFrame) [][]byte {
		if f.GetAuthOk() != nil {
			return raw(f, &wire.ServerFrame{Body: &wire.ServerFrame_Envelope{Envelope: saved}})
		}
		return raw(f)
	})
	bob.mu.Lock()
	bob.cur.close()
	bob.mu.Unlock()
	if got, drops := collect(t, bob, 0); len(got) != 0 || len(drops) != 0 {
		t.Fatalf("replay after ack: got %q, dropped %v", texts(got), drops)
	}
}

func TestHostileServerBadBundleSignatureRefused(t *testing.T) {
	_, m, alice, _ := hostileSetup(t)
	m.set(func(f *wire.ServerFrame) [][]byte {
		if p := f.GetPrekeys(); p != nil {
			for _, b := range p.Bundles {
				b[len(b)-1] ^= 1 // the KEM prekey signature's last byte
			}
		}
		return raw(f)
	})
	_, err := alice.Send(ctxT(t), "bob", "not with a forged key")
	if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), "bob/1") {
		t.Fatalf("send with a forged bundle: %v", err)
	}
	if n := count(t, alice, `SELECT COUNT(*) FROM sessions`); n != 0 {
		t.Fatalf("a session was created from a forged bundle")
	}
	// A bundle whose keys are not the ones the device list certifies is
	// refused too, even with valid signatures.
	impostor, _ := keys.GenerateIdentity()
	m.set(func(f *wire.ServerFrame) [][]byte {
		if p := f.GetPrekeys(); p != nil {
			for i, raw := range p.Bundles {
				b, err := identity.ParseBundle(raw)
				if err != nil {
					t.Fatal(err)
				}
				b.IdentityKey = impostor.Public()
				p.Bundles[i], _ = b.Marshal()
			}
		}
		return raw(f)
	})
	if _, err := alice.Send(ctxT(t), "bob", "nor this"); !errors.Is(err, ErrBadBundle) {
		t.Fatalf("send with an impostor bundle: %v", err)
	}
	m.set(nil)
	mustSend(t, alice, "bob", "honest again")
}

func TestHostileServerReordersAndDrops(t *testing.T) {
	_, m, alice, bob := hostileSetup(t)
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "m0")
	if got, _ := collect(t, bob, 0); len(got) != 1 {
		t.Fatal("setup")
	}
	mustSend(t, bob, "alice", "ack") // alice's next messages are plain ratchet messages
	collect(t, alice, 0)
	collect(t, bob, 0) // alice's delivery receipt for "ack"
	for _, s := range []string{"m1", "m2", "m3", "m4", "m5", "m6"} {
		mustSend(t, alice, "bob", s)
	}
	// Hold the backlog, then deliver it backwards without m2 and m5.
	var held []*wire.ServerFrame
	m.set(func(f *wire.ServerFrame) [][]byte {
		if e := f.GetEnvelope(); e != nil {
			held = append(held, f)
			return nil
		}
		if f.GetQueueEmpty() != nil {
			var out []*wire.ServerFrame
			for i := len(held) - 1; i >= 0; i-- {
				if i != 1 && i != 4 {
					out = append(out, held[i])
				}
			}
			return raw(append(out, f)...)
		}
		return raw(f)
	})
	got, drops := collect(t, bob, 0)
	if want := []string{"alice: m6", "alice: m4", "alice: m3", "alice: m1"}; !slices.Equal(texts(got), want) || len(drops) != 0 {
		t.Fatalf("bob got %q (dropped %v), want %q", texts(got), drops, want)
	}
	// The dropped ones were never acked; an honest connection brings them.
	m.set(nil)
	bob.mu.Lock()
	bob.cur.close()
	bob.mu.Unlock()
	got, drops = collect(t, bob, 0)
	if want := []string{"alice: m2", "alice: m5"}; !slices.Equal(texts(got), want) || len(drops) != 0 {
		t.Fatalf("bob got %q (dropped %v) later, want %q", texts(got), drops, want)
	}
}

func TestHostileServerGarbageFrames(t *testing.T) {
	srv, m, alice, bob := hostileSetup(t)
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "still fine")
	for name, garbage := range map[string][]byte{
		"not protobuf":     {0xff, 0xff, 0xff, 0x01},
		"truncated varint": {0x08, 0x80},
		"overlong field":   {0x52, 0x05, 0x01},
	} {
		m.set(func(f *wire.ServerFrame) [][]byte {
			if f.GetEnvelope() != nil {
				return [][]byte{garbage}
			}
			return raw(f)
		})
		err := bob.Receive(ctxT(t), 0, func(e Event) { t.Errorf("%s: event %v", name, e) })
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("%s: receive returned %v, want a protocol error", name, err)
		}
		if n := count(t, bob, `SELECT COUNT(*) FROM sessions`) + count(t, bob, `SELECT COUNT(*) FROM history`); n != 0 {
			t.Fatalf("%s: state changed", name)
		}
	}
	// Envelopes that parse but carry nonsense are dropped with a reason.
	m.set(func(f *wire.ServerFrame) [][]byte {
		e := f.GetEnvelope()
		if e == nil {
			return raw(f)
		}
		bad := func(mod func(e *wire.Envelope)) *wire.ServerFrame {
			g := proto.Clone(f).(*wire.ServerFrame)
			mod(g.GetEnvelope())
			g.GetEnvelope().ServerId += 5000
			return g
		}
		return raw(
			bad(func(e *wire.Envelope) { e.MessageId = []byte{1, 2, 3} }),
			bad(func(e *wire.Envelope) { e.Sender = "ALICE"; e.MessageId = []byte("aaaaaaaaaaaaaaaa") }),
			bad(func(e *wire.Envelope) { e.Content = []byte("garbage"); e.MessageId = []byte("bbbbbbbbbbbbbbbb") }),
			bad(func(e *wire.Envelope) { e.SenderDevice = 7; e.MessageId = []byte("cccccccccccccccc") }),
			bad(func(e *wire.Envelope) { e.Content[len(e.Content)-1] ^= 1; e.MessageId = []byte("dddddddddddddddd") }),
			bad(func(e *wire.Envelope) { e.Sender = "carol"; e.MessageId = []byte("eeeeeeeeeeeeeeee") }),
			f,
		)
	})
	got, drops := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: still fine"}) || len(drops) != 6 {
		t.Fatalf("got %q, dropped %d: %v", texts(got), len(drops), drops)
	}
	_ = srv
}

func TestHostileServerChangedAccountKeyAndRollback(t *testing.T) {
	_, m, alice, bob := hostileSetup(t)
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "hello")
	bobAcct, _ := bob.account()

	// A newer list signed by bob's real key is accepted and remembered...
	v2 := bobAcct.DeviceList.List
	v2.Version = 2
	signed2, err := identity.SignDeviceList(v2, bobAcct.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	enc2, _ := signed2.Marshal()
	m.set(func(f *wire.ServerFrame) [][]byte {
		if a := f.GetAccount(); a != nil {
			a.DeviceList = enc2
		}
		return raw(f)
	})
	if err := alice.CheckUser(ctxT(t), "bob"); err != nil {
		t.Fatal(err)
	}
	// ...so the server's real version 1 is now a rollback.
	m.set(nil)
	if err := alice.CheckUser(ctxT(t), "bob"); !errors.Is(err, ErrBadDeviceList) {
		t.Fatalf("fetch after rollback: %v", err)
	}
	forget := func() {
		alice.mu.Lock()
		delete(alice.fresh, "bob") // as a new process would
		alice.mu.Unlock()
	}
	forget()
	if _, err := alice.Send(ctxT(t), "bob", "rolled back?"); !errors.Is(err, ErrBadDeviceList) {
		t.Fatalf("send after rollback: %v", err)
	}

	// A list that does not verify at all is refused.
	m.set(func(f *wire.ServerFrame) [][]byte {
		if a := f.GetAccount(); a != nil {
			a.DeviceList = append([]byte(nil), enc2...)
			a.DeviceList[len(a.DeviceList)-1] ^= 1
		}
		return raw(f)
	})
	forget()
	if _, err := alice.Send(ctxT(t), "bob", "bad signature"); !errors.Is(err, ErrBadDeviceList) {
		t.Fatalf("send with a bad list signature: %v", err)
	}

	// A different account key for bob is refused.
	other, _ := keys.GenerateAccount()
	forged := bobAcct.DeviceList.List
	forged.Version = 3
	signed3, _ := identity.SignDeviceList(forged, other)
	enc3, _ := signed3.Marshal()
	m.set(func(f *wire.ServerFrame) [][]byte {
		if a := f.GetAccount(); a != nil {
			a.AccountKey, a.DeviceList = other.Public().Bytes(), enc3
		}
		return raw(f)
	})
	forget()
	_, err = alice.Send(ctxT(t), "bob", "to an impostor?")
	var kc *KeyChangedError
	if !errors.As(err, &kc) || kc.Username != "bob" {
		t.Fatalf("send with a changed account key: %v", err)
	}
}
