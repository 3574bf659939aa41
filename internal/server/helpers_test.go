package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
	"github.com/hush-chat/hush/wire"
)

// waitFor bounds every wait for the server in these tests; a wait that
// runs out is a failure, never a way to pass.
const waitFor = 10 * time.Second

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// fakeClock is a settable Config.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testServer is a real Server on a loopback listener with SQLite in a
// temporary directory.
type testServer struct {
	srv  *Server
	addr string
	dir  string
	logs *syncBuffer

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// serverOpt adjusts a Server after New and before Serve, for the knobs
// that are not in Config.
type serverOpt func(*Server)

// startServer serves on 127.0.0.1:0. Limits are off unless a test sets
// them; logs go to a buffer at Debug so tests can read everything logged.
// opts are func(*Config) or serverOpt.
func startServer(t testing.TB, opts ...any) *testServer {
	t.Helper()
	return startServerIn(t, t.TempDir(), opts...)
}

func startServerIn(t testing.TB, dir string, opts ...any) *testServer {
	t.Helper()
	ts := &testServer{dir: dir, logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg := Config{
		DataDir: dir,
		Logger:  slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits:  Unlimited(),
	}
	for _, o := range opts {
		switch o := o.(type) {
		case func(*Config):
			o(&cfg)
		case serverOpt:
		default:
			t.Fatalf("startServer: option of type %T", o)
		}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		if o, ok := o.(serverOpt); ok {
			o(srv)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.srv, ts.addr = srv, ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// stop shuts the server down and waits for Serve to return.
func (ts *testServer) stop() error {
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.err = <-ts.done:
		case <-time.After(ShutdownTimeout + 5*time.Second):
			ts.err = errors.New("Serve did not return after shutdown")
		}
	})
	return ts.err
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

func (ts *testServer) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(ts.url(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// testUser is one account with one device (id 1) and real keys.
type testUser struct {
	name string
	dev  *ratchettest.Device
}

func newUser(t testing.TB, name string, oneTime int) *testUser {
	t.Helper()
	d, err := ratchettest.NewDevice(name, 1, oneTime)
	if err != nil {
		t.Fatal(err)
	}
	return &testUser{name: name, dev: d}
}

// deviceList returns the signed device list encoding.
func (u *testUser) deviceList(t testing.TB, version uint64, devs ...identity.Device) []byte {
	t.Helper()
	l := identity.DeviceList{Username: u.name, Version: version, Devices: devs}
	if len(devs) == 0 {
		l.Devices = []identity.Device{{ID: u.dev.ID, SigningKey: u.dev.Signing.Public(), IdentityKey: u.dev.Identity.Public()}}
	}
	s, err := identity.SignDeviceList(l, u.dev.Account)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload returns all of the device's prekeys, signed, in id order.
func (u *testUser) upload() *wire.PrekeyUpload {
	d := u.dev
	ik := d.Identity.Public()
	spk := d.SPK.Public().Bytes()
	up := &wire.PrekeyUpload{SignedPrekey: &wire.SignedPrekey{
		Id: d.SignedPrekeyID, Key: spk, Signature: identity.SignPrekey(d.Signing, ik, d.SignedPrekeyID, spk),
	}}
	for _, id := range sortedKeys(d.KEM) {
		k := d.KEM[id].Public().Bytes()
		p := &wire.KEMPrekey{Id: id, Key: k, Signature: identity.SignPrekey(d.Signing, ik, id, k)}
		if d.KEM[id].LastResort() {
			up.KemLastResort = p
		} else {
			up.KemOneTime = append(up.KemOneTime, p)
		}
	}
	for _, id := range sortedKeys(d.OneTime) {
		up.OneTime = append(up.OneTime, &wire.OneTimePrekey{Id: id, Key: d.OneTime[id].Public().Bytes()})
	}
	return up
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (u *testUser) registerRequest(t testing.TB) *wire.RegisterRequest {
	return &wire.RegisterRequest{
		Username:   u.name,
		AccountKey: u.dev.Account.Public().Bytes(),
		DeviceList: u.deviceList(t, 1),
		Prekeys:    u.upload(),
	}
}

// postRegister sends a registration and returns the status and the
// decoded reply (exactly one of resp and e is set).
func (ts *testServer) postRegister(t testing.TB, body []byte) (status int, resp *wire.RegisterResponse, e *wire.Error) {
	t.Helper()
	r, err := http.Post(ts.url("/v1/register"), protobufType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode == http.StatusOK {
		resp = &wire.RegisterResponse{}
		if err := proto.Unmarshal(b, resp); err != nil {
			t.Fatalf("200 reply is not a RegisterResponse: %v", err)
		}
		return r.StatusCode, resp, nil
	}
	e = &wire.Error{}
	if err := proto.Unmarshal(b, e); err != nil || e.Code == "" {
		t.Fatalf("%d reply is not a wire.Error: %q", r.StatusCode, b)
	}
	return r.StatusCode, nil, e
}

func (ts *testServer) register(t testing.TB, req *wire.RegisterRequest) (int, *wire.RegisterResponse, *wire.Error) {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return ts.postRegister(t, b)
}

func (ts *testServer) mustRegister(t testing.TB, u *testUser) {
	t.Helper()
	if status, _, e := ts.register(t, u.registerRequest(t)); e != nil {
		t.Fatalf("register %s: %d %s: %s", u.name, status, e.Code, e.Message)
	}
}

// wsClient is a minimal authenticated device connection: a reader
// goroutine sorts replies (id > 0, and errors) from pushes (id 0).
type wsClient struct {
	conn    *websocket.Conn
	replies chan *wire.ServerFrame
	pushes  chan *wire.ServerFrame
	done    chan struct{}
	readErr error
	nextID  atomic.Uint64
	authOK  *wire.AuthOK
}

func (ts *testServer) dialRaw(t testing.TB) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+ts.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(maxFrameSize)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readFrame(t testing.TB, c *websocket.Conn) *wire.ServerFrame {
	t.Helper()
	f, err := tryReadFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tryReadFrame(c *websocket.Conn) (*wire.ServerFrame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, errors.New("server sent a text frame")
	}
	var f wire.ServerFrame
	if err := proto.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func writeFrame(t testing.TB, c *websocket.Conn, f *wire.ClientFrame) {
	t.Helper()
	b, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, c, b)
}

func writeRaw(t testing.TB, c *websocket.Conn, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
}

// authFrame answers a challenge as u's device.
func (u *testUser) authFrame(nonce []byte) *wire.ClientFrame {
	return &wire.ClientFrame{Id: 1, Body: &wire.ClientFrame_Auth{Auth: &wire.AuthResponse{
		Username: u.name, DeviceId: u.dev.ID, Signature: u.dev.Signing.Sign(AuthMessage(nonce, u.name, u.dev.ID)),
	}}}
}

// dial connects and authenticates as u.
func (ts *testServer) dial(t testing.TB, u *testUser) *wsClient {
	t.Helper()
	conn := ts.dialRaw(t)
	ch := readFrame(t, conn).GetChallenge()
	if ch == nil || len(ch.Nonce) != AuthNonceSize {
		t.Fatalf("first frame is not a %d-byte challenge", AuthNonceSize)
	}
	writeFrame(t, conn, u.authFrame(ch.Nonce))
	f := readFrame(t, conn)
	if f.GetAuthOk() == nil {
		t.Fatalf("auth as %s: got %v", u.name, f)
	}
	c := &wsClient{
		conn:    conn,
		replies: make(chan *wire.ServerFrame, 64),
		pushes:  make(chan *wire.ServerFrame, 4096),
		done:    make(chan struct{}),
		authOK:  f.GetAuthOk(),
	}
	c.nextID.Store(1)
	go c.readLoop()
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.conn.Read(context.Background())
		if err != nil {
			c.readErr = err
			return
		}
		var f wire.ServerFrame
		if err := proto.Unmarshal(b, &f); err != nil {
			c.readErr = err
			return
		}
		if f.Id == 0 && f.GetError() == nil {
			c.pushes <- &f
		} else {
			c.replies <- &f
		}
	}
}

// do sends a request and waits for its reply.
func (c *wsClient) do(t testing.TB, f *wire.ClientFrame) *wire.ServerFrame {
	t.Helper()
	f.Id = c.nextID.Add(1)
	writeFrame(t, c.conn, f)
	select {
	case r := <-c.replies:
		if r.Id != f.Id {
			t.Fatalf("reply id %d to request %d: %v", r.Id, f.Id, r)
		}
		return r
	case <-c.done:
		t.Fatalf("connection closed while waiting for a reply: %v", c.readErr)
	case <-time.After(waitFor):
		t.Fatal("no reply")
	}
	return nil
}

// push returns the next pushed frame.
func (c *wsClient) push(t testing.TB) *wire.ServerFrame {
	t.Helper()
	select {
	case p := <-c.pushes:
		return p
	case <-c.done:
		select {
		case p := <-c.pushes:
			return p
		default:
		}
		t.Fatalf("connection closed while waiting for a push: %v", c.readErr)
	case <-time.After(waitFor):
		t.Fatal("no push")
	}
	return nil
}

// envelopes reads pushes up to queue_empty and returns the envelopes.
func (c *wsClient) backlog(t testing.TB) []*wire.Envelope {
	t.Helper()
	var envs []*wire.Envelope
	for {
		p := c.push(t)
		switch {
		case p.GetQueueEmpty() != nil:
			return envs
		case p.GetEnvelope() != nil:
			envs = append(envs, p.GetEnvelope())
		}
	}
}

// envelope waits for the next pushed envelope, skipping other pushes.
func (c *wsClient) envelope(t testing.TB) *wire.Envelope {
	t.Helper()
	for {
		if e := c.push(t).GetEnvelope(); e != nil {
			return e
		}
	}
}

func (c *wsClient) close() {
	c.conn.Close(websocket.StatusNormalClosure, "")
	<-c.done
}

func newMessageID() []byte {
	id := make([]byte, MessageIDSize)
	rand.Read(id)
	return id
}

// sendFrame builds a send with one copy per listed device.
func sendFrame(id []byte, to string, content []byte, devices ...uint32) *wire.ClientFrame {
	if len(devices) == 0 {
		devices = []uint32{1}
	}
	req := &wire.SendRequest{MessageId: id, Recipient: to}
	for _, d := range devices {
		req.Copies = append(req.Copies, &wire.Copy{DeviceId: d, Content: content})
	}
	return &wire.ClientFrame{Body: &wire.ClientFrame_Send{Send: req}}
}

// send sends content to every listed device of to and requires stored.
func (c *wsClient) send(t testing.TB, to string, content []byte, devices ...uint32) []byte {
	t.Helper()
	id := newMessageID()
	r := c.do(t, sendFrame(id, to, content, devices...))
	if !r.GetSent().GetStored() {
		t.Fatalf("send to %s not stored: %v", to, r)
	}
	return id
}

// trySend is send for goroutines other than the test's: it returns an
// error instead of failing the test.
func (c *wsClient) trySend(to string, content []byte) error {
	f := sendFrame(newMessageID(), to, content)
	f.Id = c.nextID.Add(1)
	b, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		return err
	}
	select {
	case r := <-c.replies:
		if r.Id != f.Id || !r.GetSent().GetStored() {
			return fmt.Errorf("send %d: got %v", f.Id, r)
		}
		return nil
	case <-ctx.Done():
		return errors.New("no reply to send")
	}
}

func (c *wsClient) ack(t testing.TB, envs ...*wire.Envelope) {
	t.Helper()
	req := &wire.AckRequest{}
	for _, e := range envs {
		req.ServerIds = append(req.ServerIds, e.ServerId)
	}
	if r := c.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_Ack{Ack: req}}); r.GetAcked() == nil {
		t.Fatalf("ack: %v", r)
	}
}

// wantError checks a reply is an Error with the code.
func wantError(t testing.TB, f *wire.ServerFrame, code string) {
	t.Helper()
	if f.GetError().GetCode() != code {
		t.Fatalf("got %v, want error %q", f, code)
	}
}
