package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// dialProvision opens GET /v1/provision as a device being linked and
// reads its relay address.
func (ts *testServer) dialProvision(t testing.TB) (*websocket.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+ts.addr+"/v1/provision", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(MaxProvisionBody + 1024)
	t.Cleanup(func() { c.CloseNow() })
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var a wire.ProvisionAddress
	if typ != websocket.MessageBinary || proto.Unmarshal(b, &a) != nil {
		t.Fatalf("first provisioning message is not a binary ProvisionAddress: %q", b)
	}
	if !validProvisionAddress(a.Address) {
		t.Fatalf("address %q is not 32 lower-case hex digits", a.Address)
	}
	return c, a.Address
}

// readEnvelope reads the relayed envelope, then the server's normal close.
func readEnvelope(t testing.TB, c *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("no envelope: %v", err)
	}
	var env wire.ProvisionEnvelope
	if typ != websocket.MessageBinary || proto.Unmarshal(b, &env) != nil {
		t.Fatalf("relayed message is not a binary ProvisionEnvelope")
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the envelope the socket ended with %v, want a normal close", err)
	}
	return env.Body
}

func provisionFrame(addr string, body []byte) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_ProvisionSend{ProvisionSend: &wire.ProvisionSendRequest{Address: addr, Body: body}}}
}

// TestProvisionRelay: the waiting device gets exactly the body the
// authenticated device sent, once; neither the address nor the body is
// logged.
func TestProvisionRelay(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	link, addr := ts.dialProvision(t)
	other, otherAddr := ts.dialProvision(t)
	if addr == otherAddr {
		t.Fatal("two devices got the same address")
	}
	body := []byte("CANARY-sealed-link-payload-3b9e")
	if r := ac.do(t, provisionFrame(addr, body)); r.GetOk() == nil {
		t.Fatalf("provision_send: %v", r)
	}
	if got := readEnvelope(t, link); !bytes.Equal(got, body) {
		t.Fatalf("relayed %q, want %q", got, body)
	}
	// Once only: the address is gone.
	wantError(t, ac.do(t, provisionFrame(addr, body)), codeNoSuchAddress)
	// The other device still waits, and gets its own.
	if r := ac.do(t, provisionFrame(otherAddr, []byte("second"))); r.GetOk() == nil {
		t.Fatalf("provision_send: %v", r)
	}
	if got := readEnvelope(t, other); string(got) != "second" {
		t.Fatalf("relayed %q", got)
	}

	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	logs := ts.logs.Bytes()
	if n := bytes.Count(logs, []byte(`"msg":"provision relayed"}`)); n != 2 {
		t.Fatalf("%d lines say provision relayed (with nothing else), want 2", n)
	}
	for _, secret := range [][]byte{body, []byte(addr), []byte(otherAddr), []byte(addr[:12])} {
		if bytes.Contains(logs, secret) {
			t.Fatalf("log holds %q", secret)
		}
	}
}

func TestProvisionSendRejects(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	_, addr := ts.dialProvision(t)
	for _, bad := range []string{"", addr[:31], addr + "0", "ABCDEF0123456789ABCDEF0123456789", "zz" + addr[2:]} {
		wantError(t, ac.do(t, provisionFrame(bad, []byte("x"))), codeBadRequest)
	}
	wantError(t, ac.do(t, provisionFrame(addr, nil)), codeBadRequest)
	wantError(t, ac.do(t, provisionFrame(addr, make([]byte, MaxProvisionBody+1))), codeTooLarge)
	wantError(t, ac.do(t, provisionFrame("0123456789abcdef0123456789abcdef", []byte("x"))), codeNoSuchAddress)
	// Provisioning needs an authenticated device: the socket is not a
	// way in.
	c := ts.dialRaw(t)
	readFrame(t, c)
	f := provisionFrame(addr, []byte("x"))
	f.Id = 1
	writeFrame(t, c, f)
	wantError(t, readFrame(t, c), codeUnauthorized)
}

// TestProvisionLargeBody relays a body at the 8 MiB cap, which needs the
// authenticated socket's raised read limit; other requests keep the
// ordinary frame limit.
func TestProvisionLargeBody(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	link, addr := ts.dialProvision(t)
	body := make([]byte, MaxProvisionBody)
	rand.Read(body)
	// The device reads while the relay writes, as a real one does: the
	// relay's write returns only once the envelope is on its way.
	got := make(chan []byte, 1)
	go func() {
		typ, b, err := link.Read(context.Background())
		var env wire.ProvisionEnvelope
		if err != nil || typ != websocket.MessageBinary || proto.Unmarshal(b, &env) != nil {
			got <- nil
			return
		}
		got <- env.Body
	}()
	if r := ac.do(t, provisionFrame(addr, body)); r.GetOk() == nil {
		t.Fatalf("provision_send of %d bytes: %v", len(body), r)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, body) {
			t.Fatal("the large body was not relayed intact")
		}
	case <-time.After(waitFor):
		t.Fatal("no envelope")
	}
	big := &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: string(make([]byte, maxFrameSize))}}}
	wantError(t, ac.do(t, big), codeTooLarge)
	ac.send(t, "bob", []byte("still usable"))
}

func TestProvisionLifetime(t *testing.T) {
	ts := startServer(t, serverOpt(func(s *Server) { s.provisionLifetime = 100 * time.Millisecond }))
	_, _, ac := pair(t, ts)
	link, addr := ts.dialProvision(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, _, err := link.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("expired provisioning socket ended with %v", err)
	}
	wantError(t, ac.do(t, provisionFrame(addr, []byte("late"))), codeNoSuchAddress)
}

// TestProvisionDeviceMustNotSpeak: data from the waiting device ends its
// socket and frees its address.
func TestProvisionDeviceMustNotSpeak(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	link, addr := ts.dialProvision(t)
	writeRaw(t, link, []byte("hello"))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, _, err := link.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("socket ended with %v", err)
	}
	eventually(t, "the address is freed", func() bool {
		return ac.do(t, provisionFrame(addr, []byte("x"))).GetError().GetCode() == codeNoSuchAddress
	})
}

func TestProvisionRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.ProvisionsPerHour, c.Limits.ProvisionBurst = 1, 2 })
	ts.dialProvision(t)
	ts.dialProvision(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+ts.addr+"/v1/provision", nil)
	if c != nil {
		c.CloseNow()
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third provisioning socket: %v %v, want HTTP 429", resp, err)
	}
}

func TestShutdownClosesProvisionSockets(t *testing.T) {
	ts := startServer(t)
	link, _ := ts.dialProvision(t)
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, _, err := link.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("provisioning socket ended with %v at shutdown, want going away", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
