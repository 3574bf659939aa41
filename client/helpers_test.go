package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/server"
)

// testServer is a real Hush server on a loopback port, restartable on the
// same address and data directory.
type testServer struct {
	t       testing.TB
	dir     string
	powBits int
	addr    string
	URL     string
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

// syncBuffer collects the server's log output for the canary checks.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t testing.TB) *testServer { return startServerPow(t, 0) }

// startServerPow starts a server asking for a proof of work of bits.
func startServerPow(t testing.TB, bits int) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", logs: &syncBuffer{}, powBits: bits}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	var ln net.Listener
	var err error
	// Restarting on the port just released can race with its teardown;
	// try a bounded number of times.
	for range 50 {
		if ln, err = net.Listen("tcp", ts.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		ts.t.Fatalf("listen: %v", err)
	}
	ts.addr = ln.Addr().String()
	ts.URL = "http://" + ts.addr
	srv, err := server.New(server.Config{
		DataDir: ts.dir,
		PowBits: ts.powBits,
		Logger:  slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits:  server.Unlimited(),
	})
	if err != nil {
		ts.t.Fatalf("server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	ts.done = make(chan error, 1)
	go func() { ts.done <- srv.Serve(ctx, ln) }()
}

func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	if err := <-ts.done; err != nil && !errors.Is(err, context.Canceled) {
		ts.t.Errorf("server stopped with %v", err)
	}
	ts.cancel = nil
}

func (ts *testServer) restart() {
	ts.stop()
	ts.start()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newUser registers name on the server in a fresh home.
func newUser(t testing.TB, url, name string) *Client {
	t.Helper()
	c, err := New(Config{Home: t.TempDir(), Warn: func(err error) { t.Logf("warning for %s: %v", name, err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Register(ctxT(t), url, name); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return c
}

// collect receives with the given wait and returns the events.
func collect(t testing.TB, c *Client, wait time.Duration) ([]*MessageEvent, []*DroppedEvent) {
	t.Helper()
	var msgs []*MessageEvent
	var drops []*DroppedEvent
	err := c.Receive(ctxT(t), wait, func(e Event) {
		switch e := e.(type) {
		case *MessageEvent:
			msgs = append(msgs, e)
		case *DroppedEvent:
			drops = append(drops, e)
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msgs, drops
}

func texts(ms []*MessageEvent) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.From+": "+m.Text)
	}
	return out
}

func mustSend(t testing.TB, c *Client, to, text string) MessageID {
	t.Helper()
	id, err := c.Send(ctxT(t), to, text)
	if err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
	return id
}
